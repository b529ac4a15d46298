"""The tamper-evident audit ledger: a hash chain and an RFC 6962 Merkle tree with signed checkpoints."""
