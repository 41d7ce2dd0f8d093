#!/usr/bin/env python3
"""Writes docs/CONFIGURATION.md from the doc comments of the config structs.

Every `pub` field of the listed structs becomes a row: key, type, and its `///` doc (which
states the default). Tests in each role's config module check that every key of the default
config appears in the generated file, so run this after changing a config struct:

    python3 scripts/gen-config-docs.py
"""
import re
import pathlib

ROOT = pathlib.Path(__file__).resolve().parent.parent

SECTIONS = [
    ("Client (`client.toml`)", "crates/client/src/config.rs", "ClientConfig", ""),
    ("Client `[privacy]` (the sealed path, docs/PRIVACY.md)", "crates/client/src/config.rs", "PrivacyConfig", "privacy."),
    ("Client `[keys]` (per-app API keys, docs/KEYS.md)", "crates/client/src/config.rs", "KeysConfig", "keys."),
    ("`[proxy_discovery]` (client and worker)", "crates/node/src/discovery.rs", "DiscoveryConfig", "proxy_discovery."),
    ("Proxy (`proxy.toml`)", "crates/proxy/src/config.rs", "ProxyConfig", ""),
    ("Proxy `[[clients]]` entries", "crates/proxy/src/config.rs", "ClientEntry", "clients[]."),
    ("Proxy `[receipts]` (the receipt log and its anchoring, docs/PRIVACY.md)", "crates/proxy/src/config.rs", "ReceiptsConfig", "receipts."),
    ("`[accept]` (proxy and key manager)", "crates/node/src/net.rs", "AcceptLimits", "accept."),
    ("Key manager (`key-manager.toml`)", "crates/key-manager/src/config.rs", "KeyManagerConfig", ""),
    ("Worker (`worker-N.toml`)", "crates/worker/src/config.rs", "WorkerConfig", ""),
    ("Worker `[engine]`", "crates/worker/src/config.rs", "EngineConfig", "engine."),
    ("`[attestation]` (every role)", "crates/node/src/config.rs", "AttestationConfig", "attestation."),
    ("`[pricing]` (proxy and worker; the chain-off network's prices: with `[chain]` on the root's params are used)", "crates/node/src/config.rs", "PricingConfig", "pricing."),
    ("`[chain]` (every role; payments)", "crates/onchain/src/config.rs", "ChainConfig", "chain."),
]


def fields(path, struct):
    text = (ROOT / path).read_text()
    m = re.search(r"pub struct " + struct + r" \{(.*?)\n\}", text, re.S)
    if not m:
        raise SystemExit(f"{struct} not found in {path}")
    out, doc = [], []
    for line in m.group(1).splitlines():
        s = line.strip()
        if s.startswith("///"):
            doc.append(s[3:].strip())
        elif s.startswith("#["):
            continue
        elif s.startswith("pub "):
            name, ty = s[4:].rstrip(",").split(":", 1)
            out.append((name.strip(), ty.strip(), " ".join(doc)))
            doc = []
        else:
            doc = []
    return out


def main():
    lines = [
        "# Configuration",
        "",
        "Each role reads one TOML file (`--config FILE`, or the role's file in a `cocoon dev`",
        "data dir with `--data-dir DIR`). Every key is optional: a missing key takes the default",
        "stated below, an unknown key is an error. Durations are written like `\"30s\"`, `\"2h\"`.",
        "`cocoon dev` writes complete files for its network, which are a good starting point.",
        "",
        "Generated from the config structs' doc comments by `scripts/gen-config-docs.py`.",
        "",
    ]
    for title, path, struct, prefix in SECTIONS:
        lines += [f"## {title}", "", "| key | type | meaning and default |", "|---|---|---|"]
        for name, ty, doc in fields(path, struct):
            lines.append(f"| `{prefix}{name}` | `{ty}` | {doc.replace('|', '/')} |")
        lines.append("")
    (ROOT / "docs/CONFIGURATION.md").write_text("\n".join(lines))


if __name__ == "__main__":
    main()
