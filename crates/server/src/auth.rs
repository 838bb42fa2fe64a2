//! Tenant credentials. A credential is a random 256-bit secret, shown once when the tenant is
//! created; the server keeps only `salt:BLAKE3-keyed(salt, secret)` in
//! `<data>/tenants/<tenant>/credential` (mode 0600). Because the secret is random and long, a
//! fast keyed hash is enough: there is no password to guess slowly.

use std::path::PathBuf;

use keel_domain::TenantId;
use keel_pipeline::DataDir;

fn credential_path(data: &DataDir, tenant: TenantId) -> PathBuf {
    data.tenant_dir(tenant).join("credential")
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex32(text: &str) -> Option<[u8; 32]> {
    if text.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (index, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(text.get(index * 2..index * 2 + 2)?, 16).ok()?;
    }
    Some(out)
}

/// True when the tenant has a credential.
pub fn exists(data: &DataDir, tenant: TenantId) -> bool {
    credential_path(data, tenant).exists()
}

/// Creates the tenant's credential and returns the secret (the only time it is seen).
/// Refuses to replace an existing one.
pub fn create(data: &DataDir, tenant: TenantId) -> anyhow::Result<String> {
    use std::io::Write;
    let mut secret = [0u8; 32];
    let mut salt = [0u8; 32];
    getrandom::getrandom(&mut secret).map_err(|e| anyhow::anyhow!("random: {e}"))?;
    getrandom::getrandom(&mut salt).map_err(|e| anyhow::anyhow!("random: {e}"))?;
    let secret = hex(&secret);
    let hash = blake3::keyed_hash(&salt, secret.as_bytes());
    let path = credential_path(data, tenant);
    std::fs::create_dir_all(data.tenant_dir(tenant))?;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(&path).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    writeln!(file, "{}:{}", hex(&salt), hash.to_hex())?;
    file.sync_all()?;
    Ok(secret)
}

/// Checks a secret against the stored hash (constant-time comparison).
pub fn verify(data: &DataDir, tenant: TenantId, secret: &str) -> bool {
    let Ok(stored) = std::fs::read_to_string(credential_path(data, tenant)) else { return false };
    let Some((salt, hash)) = stored.trim().split_once(':') else { return false };
    let (Some(salt), Some(hash)) = (unhex32(salt), unhex32(hash)) else { return false };
    blake3::keyed_hash(&salt, secret.as_bytes()) == blake3::Hash::from_bytes(hash)
}
