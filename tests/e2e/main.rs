//! End-to-end tests: real `cocoon` processes (proxy, workers, client, mock engines) talking over
//! PoW + RA-TLS + Cocoon framing on 127.0.0.1. Each test builds its own network on free ports.

mod audio;
mod bad_input;
mod canary;
mod change_model;
mod client_money;
mod clock_skew;
mod encrypted;
mod evidence;
mod faults;
mod golden_replay;
mod harness;
mod hostile;
mod hostile_proxy;
mod hostile_sealed;
mod hostile_worker;
mod key_manager;
#[cfg(feature = "llama")]
mod llama;
mod load;
mod netns;
mod openai_api;
mod paying;
mod payments;
mod receipts;
mod root_follow;
mod sdk;
mod summarize;
