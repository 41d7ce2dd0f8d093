#!/usr/bin/env python3
"""Opens the known-answer vector of cocoon-sealed (src/envelope/tests.rs,
`known_answer_envelope_and_first_piece`) with an implementation written from the documents
alone: RFC 9180 (HPKE mode Base, DHKEM(X25519, HKDF-SHA256), HKDF-SHA256, ChaCha20-Poly1305)
and the envelope layout, answer piece layout and key schedule in the crate doc (src/lib.rs).
A second implementation (another language, another team) can start from here.

Needs Python 3 and `cryptography` (pip install cryptography). Run: python3 check_vector.py
"""
import hashlib, hmac, struct
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from cryptography.hazmat.primitives import serialization

env = bytes.fromhex("43534c440100000000000000070111111111111111111111111111111111111111111111111111111111111111110faa684ed28867b97f4a6a2dee5df8ce974e76b7018e3f22a1c4cf2678570f20693658254630f73ad8da78fb331bf976cd42f90e0e9c9e83f40c51072a6f7417381b148b5aeb94a4e9d0d67439383508c430f9f7a7c5346e83a3d3258258e576d9bab880b73151d16bf1ebff100649860000001974d4f67d622bc41240af5b3cac646fb9aee97fc4b913c7b370")
piece = bytes.fromhex("01c8c9cacbcccdcecfd0d1d2d3d4d5d6d7d8d9dadbdcdddedfe0e1e2e3e4e5e6e7f2af604c277d83a32db86294f113e1b1dd9cd74295cb76b0f1")

def hkdf_extract(salt, ikm): return hmac.new(salt, ikm, hashlib.sha256).digest()
def hkdf_expand(prk, info, L):
    out=b""; t=b""; i=1
    while len(out)<L:
        t=hmac.new(prk, t+info+bytes([i]), hashlib.sha256).digest(); out+=t; i+=1
    return out[:L]

# RFC 9180 DHKEM(X25519, HKDF-SHA256), HKDF-SHA256, ChaCha20Poly1305, mode base
KEM_ID, KDF_ID, AEAD_ID = 0x0020, 0x0001, 0x0003
kem_suite = b"KEM" + struct.pack(">H", KEM_ID)
hpke_suite = b"HPKE" + struct.pack(">HHH", KEM_ID, KDF_ID, AEAD_ID)
def lx(suite, salt, label, ikm): return hkdf_extract(salt, b"HPKE-v1" + suite + label + ikm)
def le(suite, prk, label, info, L): return hkdf_expand(prk, struct.pack(">H", L) + b"HPKE-v1" + suite + label + info, L)

sk = X25519PrivateKey.from_private_bytes(bytes([0x22]*32))
pk = sk.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)

assert env[:4] == b"CSLD" and env[4] == 1
max_tokens = struct.unpack(">Q", env[5:13])[0]; n = env[13]
assert (max_tokens, n) == (7, 1)
slot = env[14:14+144]
worker_key, sealing_key, enc, wrapped = slot[:32], slot[32:64], slot[64:96], slot[96:144]
assert worker_key == bytes([0x11]*32) and sealing_key == pk
body_len = struct.unpack(">I", env[14+144:18+144])[0]
header = env[:18+144]; body = env[18+144:]
assert len(body) == body_len

dh = sk.exchange(X25519PublicKey.from_public_bytes(enc))
eae_prk = lx(kem_suite, b"", b"eae_prk", dh)
shared = le(kem_suite, eae_prk, b"shared_secret", enc + pk, 32)
info = b"cocoon-rs sealed request v1"
psk_id_hash = lx(hpke_suite, b"", b"psk_id_hash", b"")
info_hash = lx(hpke_suite, b"", b"info_hash", info)
ctx = b"\x00" + psk_id_hash + info_hash
secret = lx(hpke_suite, shared, b"secret", b"")
key = le(hpke_suite, secret, b"key", ctx, 32)
base_nonce = le(hpke_suite, secret, b"base_nonce", ctx, 12)
wrap_aad = header[:14] + slot[:96] + header[14+144:]
K = ChaCha20Poly1305(key).decrypt(base_nonce, wrapped, wrap_aad)
assert K == bytes(range(32)), K.hex()

body_key = hkdf_expand(hkdf_extract(b"\x00"*32, K), b"cocoon-rs sealed body v1", 32)
padded = ChaCha20Poly1305(body_key).decrypt(b"\x00"*12, body, header)
L = struct.unpack(">I", padded[:4])[0]
assert padded[4:4+L] == b"hello" and padded[4+L:] == b""

req_hash = hashlib.sha256(env).digest()
flags = piece[0]; stream_nonce = piece[1:33]; ct = piece[33:]
assert flags == 1
ans_key = hkdf_expand(hkdf_extract(req_hash, K), b"cocoon-rs sealed answer v1" + stream_nonce, 32)
p = ChaCha20Poly1305(ans_key).decrypt(b"\x00"*4 + struct.pack(">Q", 0), ct, bytes([flags]) + struct.pack(">Q", 0))
assert p == struct.pack(">I", 5) + b"world"
assert req_hash.hex() == "668614034bcd967b222bdeed79ca40de97f1e8ff353e8eca1ddc22d3f227e08f"
assert hashlib.sha256(b"\x00"*32 + piece).hexdigest() == "451e7f8926d8ab22fd87f4e9051144db90cd643724102076e13d6c00a0356f78"
print("ok: envelope and answer piece match the documented layout and key schedule")

# Receipt (src/receipt/tests.rs, `known_answer_receipt`): 225-byte statement, its signature,
# 49-byte proxy statement, the proxy's signature; Ed25519 over the domain-separated messages.
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
receipt = bytes.fromhex("010101010101010101010101010101010101010101010101010101010101010101020202020202020202020202020202020202020202020202020202020202020203030303030303030303030303030303030303030303030303030303030303030000000000000000000000000000000000000000000000000000000000000000000000000000006400000000000000140000000000000032000000000000000a000000000000009600000000000003e80000018bcfe568000000018bcfe56ddc8a88e3dd7409f195fd52db2d3cba5d72ca6709bf1d94121bf3748801b40f6f5c717fe00d91de7e27310e06d69e25f8b690b3a3bdcc4eb83dfcf5239d9f9fc013f1fd4ac59e4272fd55691e2755e08a69d2c3696dcf2353624bb1cef647d68a040100000000000000140000000000000bb88139770ea87d175f56a35466c34c7ecccb8d8a91b4ee37a25df60f5b8fc9b394638311739cf603b52ee6891fbd84633cb2839116b0468983d3c407f02453670a68274edcd67458f6dfcb1f5a987d0f59d6edaab9ac6c086960ec801b8682750b")
assert len(receipt) == 402
statement, wsig = receipt[:225], receipt[225:289]
proxy, psig = receipt[289:338], receipt[338:402]
assert statement[0] == 1 and proxy[0] == 1
usage = struct.unpack(">5Q", statement[129:169])
coefficient, started_ms, ended_ms = struct.unpack(">3Q", statement[169:193])
worker_key = statement[193:225]
price_per_token, charge = struct.unpack(">2Q", proxy[1:17])
proxy_key = proxy[17:49]
assert usage == (100, 20, 50, 10, 150) and coefficient == 1000 and (price_per_token, charge) == (20, 3000)
Ed25519PublicKey.from_public_bytes(worker_key).verify(wsig, b"cocoon-rs worker receipt v1\0" + statement)
Ed25519PublicKey.from_public_bytes(proxy_key).verify(psig, b"cocoon-rs proxy receipt v1\0" + receipt[:289] + proxy)
assert hashlib.sha256(receipt).hexdigest() == "7af5f41d11b9e4a1b7e278dd1897c35813eecfd81c6101a9a97147aab58ef066"
print("ok: receipt layout, signatures and id match the doc")
