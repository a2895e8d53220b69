//! IKEv2 cryptography: PRF and prf+, key exchange, the key schedule, the SK payload cipher, authentication and certificates.
