//! The node's Ed25519 signing key, which signs checkpoints. It lives outside every tenant's
//! data directory (`<data>/node/`), so that a copy of a tenant's data cannot re-sign a
//! doctored journal. The public half verifies checkpoints anywhere.

use std::path::{Path, PathBuf};

use ed25519_dalek::{Signer, SigningKey, VerifyingKey};
use keel_domain::TenantId;

use crate::error::JournalError;
use crate::format::{tenant_bytes, ChainHash};

pub const SECRET_FILE: &str = "node.key";
pub const PUBLIC_FILE: &str = "node.pub";

/// Signs checkpoints.
#[derive(Debug, Clone)]
pub struct NodeKey {
    signing: SigningKey,
}

impl NodeKey {
    /// Loads `<dir>/node.key`, creating a new key pair (and `node.pub`) if there is none.
    pub fn load_or_create(dir: &Path) -> Result<NodeKey, JournalError> {
        let secret_path = dir.join(SECRET_FILE);
        match std::fs::read_to_string(&secret_path) {
            Ok(text) => {
                let seed = parse_hex32(text.trim())
                    .ok_or_else(|| key_error(&secret_path, "is not 64 hex digits"))?;
                Ok(NodeKey { signing: SigningKey::from_bytes(&seed) })
            }
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
                std::fs::create_dir_all(dir).map_err(JournalError::io(dir))?;
                let mut seed = [0u8; 32];
                getrandom::getrandom(&mut seed)
                    .map_err(|e| key_error(&secret_path, &e.to_string()))?;
                let key = NodeKey { signing: SigningKey::from_bytes(&seed) };
                write_private(&secret_path, &hex(&seed))?;
                let public_path = dir.join(PUBLIC_FILE);
                std::fs::write(&public_path, hex(key.verifying_key().as_bytes()) + "\n")
                    .map_err(JournalError::io(&public_path))?;
                Ok(key)
            }
            Err(error) => Err(JournalError::Io { path: secret_path, source: error }),
        }
    }

    pub fn from_seed(seed: [u8; 32]) -> NodeKey {
        NodeKey { signing: SigningKey::from_bytes(&seed) }
    }

    pub fn verifying_key(&self) -> VerifyingKey {
        self.signing.verifying_key()
    }

    /// Signs a checkpoint: the tenant, the sequence it covers, the chain value before it and the
    /// engine's state hash.
    pub fn sign_checkpoint(
        &self,
        tenant: TenantId,
        sequence: u64,
        prev_chain: &ChainHash,
        state_hash: &[u8; 32],
    ) -> [u8; 64] {
        self.signing.sign(&checkpoint_message(tenant, sequence, prev_chain, state_hash)).to_bytes()
    }

    /// Signs a state-hash record: the tenant, the sequence whose state it attests, the chain
    /// value before the record and the hash.
    pub fn sign_state_hash(
        &self,
        tenant: TenantId,
        sequence: u64,
        prev_chain: &ChainHash,
        state_hash: &[u8; 32],
    ) -> [u8; 64] {
        self.signing.sign(&state_hash_message(tenant, sequence, prev_chain, state_hash)).to_bytes()
    }
}

/// Reads a public key (`node.pub`: 64 hex digits).
pub fn load_public_key(path: &Path) -> Result<VerifyingKey, JournalError> {
    let text = std::fs::read_to_string(path).map_err(JournalError::io(path))?;
    parse_public_key(text.trim())
        .ok_or_else(|| key_error(path, "is not a valid Ed25519 public key in hex"))
}

pub fn parse_public_key(text: &str) -> Option<VerifyingKey> {
    VerifyingKey::from_bytes(&parse_hex32(text)?).ok()
}

/// The bytes a checkpoint signature covers.
pub fn checkpoint_message(
    tenant: TenantId,
    sequence: u64,
    prev_chain: &ChainHash,
    state_hash: &[u8; 32],
) -> [u8; 128] {
    signed_message(b"keel checkpoint v1\0\0\0\0\0\0", tenant, sequence, prev_chain, state_hash)
}

/// The bytes a state-hash record's signature covers: as a checkpoint's under another label,
/// so that neither signature can be passed off as the other.
pub fn state_hash_message(
    tenant: TenantId,
    sequence: u64,
    prev_chain: &ChainHash,
    state_hash: &[u8; 32],
) -> [u8; 128] {
    signed_message(b"keel state hash v1\0\0\0\0\0\0", tenant, sequence, prev_chain, state_hash)
}

fn signed_message(
    label: &[u8; 24],
    tenant: TenantId,
    sequence: u64,
    prev_chain: &ChainHash,
    state_hash: &[u8; 32],
) -> [u8; 128] {
    let mut message = [0u8; 128];
    message[..24].copy_from_slice(label);
    message[24..56].copy_from_slice(&tenant_bytes(tenant));
    message[56..64].copy_from_slice(&sequence.to_le_bytes());
    message[64..96].copy_from_slice(prev_chain);
    message[96..128].copy_from_slice(state_hash);
    message
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn parse_hex32(text: &str) -> Option<[u8; 32]> {
    if text.len() != 64 || !text.is_ascii() {
        return None;
    }
    let mut out = [0u8; 32];
    for (index, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&text[index * 2..index * 2 + 2], 16).ok()?;
    }
    Some(out)
}

fn key_error(path: &Path, reason: &str) -> JournalError {
    JournalError::Key { path: PathBuf::from(path), reason: reason.to_owned() }
}

fn write_private(path: &Path, text: &str) -> Result<(), JournalError> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(path).map_err(JournalError::io(path))?;
    file.write_all(format!("{text}\n").as_bytes()).map_err(JournalError::io(path))?;
    file.sync_all().map_err(JournalError::io(path))
}
