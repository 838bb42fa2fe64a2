//! Server configuration: embedded defaults, then `keel.toml` (every key optional), then
//! `KEEL_*` environment variables (`KEEL_LISTEN=127.0.0.1:7070`, `KEEL_DATA_DIR=...`).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServerConfig {
    /// Native protocol listener.
    pub listen: SocketAddr,
    /// Prometheus metrics (HTTP); none to disable.
    pub metrics_listen: Option<SocketAddr>,
    pub data_dir: PathBuf,
    /// Largest frame payload accepted: at most `FRAME_BYTES_LIMIT`.
    pub frame_bytes_max: u32,
    /// Most instructions in one batch.
    pub batch_instructions_max: usize,
    /// Most open connections; more are refused with an error frame.
    pub connections_max: usize,
    /// A session that sends nothing for this long is closed.
    pub idle_timeout_ms: u64,
    /// Batches a session may have waiting for their acknowledgements before it stops reading.
    pub session_batches_in_flight_max: usize,
    /// A client that does not read its acknowledgements for this long is disconnected.
    pub write_timeout_ms: u64,
    /// A signed checkpoint every so many commands per tenant.
    pub checkpoint_interval: u64,
    /// A snapshot every so many commands per tenant.
    pub snapshot_interval: u64,
    /// Each tenant's tables are sized at start for this many trades and positions, so the
    /// session never stalls to grow them (address space is reserved; memory is only used as
    /// it fills).
    pub reserve_trades: usize,
    pub reserve_positions: usize,
    /// Runs the latency path (runtime workers, shards, journal writers) in the real-time class
    /// `SCHED_FIFO` at this priority (1 to 99), so that a woken thread takes its core at once
    /// instead of waiting up to a scheduler tick. Needs `CAP_SYS_NICE` or root; the server
    /// refuses to start when it cannot have it. None (the default): the normal class.
    /// docs/architecture.md, on the latency path's scheduling class.
    pub realtime_priority: Option<u8>,
    /// Writes journal segments the helper preallocated, and their zeros, with `O_DIRECT`,
    /// bypassing the page cache where the file system allows it (on by default; the bytes on
    /// disk are the same either way). `KEEL_JOURNAL_DIRECT_IO=false` puts them through the
    /// page cache, as before.
    pub journal_direct_io: bool,
    /// Starts each journal segment as a file of zeros a helper thread wrote ahead of time, so
    /// that a group commit's sync carries data only (on by default). It doubles the bytes the
    /// disk is given. `KEEL_JOURNAL_PREALLOCATE=false` grows segments by appends instead.
    pub journal_preallocate: bool,
    /// A journal segment is closed, and the next begun, once it holds this many bytes (64 MiB
    /// by default). Preallocated segments are written as files of this size.
    /// `KEEL_JOURNAL_SEGMENT_BYTES`.
    pub journal_segment_bytes: u64,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 7070)),
            metrics_listen: Some(SocketAddr::from(([127, 0, 0, 1], 9464))),
            data_dir: PathBuf::from("keel-data"),
            frame_bytes_max: keel_wire::FRAME_BYTES_MAX,
            batch_instructions_max: 5_000,
            connections_max: 1_024,
            idle_timeout_ms: 60_000,
            session_batches_in_flight_max: 64,
            write_timeout_ms: 30_000,
            checkpoint_interval: 10_000,
            snapshot_interval: 1_000_000,
            reserve_trades: 1_000_000,
            reserve_positions: 250_000,
            realtime_priority: None,
            journal_direct_io: true,
            journal_preallocate: true,
            journal_segment_bytes: 64 << 20,
        }
    }
}

/// The smallest journal segment: a segment holds at least its header and a record or two.
const SEGMENT_BYTES_MIN: u64 = 64 << 10;
/// The largest journal segment (a segment is read whole when its journal is opened).
const SEGMENT_BYTES_LIMIT: u64 = 4 << 30;

/// The largest `frame_bytes_max`: half of `ENVELOPE_BYTES_MAX` (16 MiB), what a journal record
/// holds. A command's journal encoding (variable-length integers) can be larger than its wire
/// encoding (fixed-width): at worst half again (a `u16` of 251 or more takes 3 bytes instead
/// of 2, a large `u64` 9 instead of 8); with this bound every
/// instruction a session accepts can be journaled, and `TenantStore::stage` never refuses one
/// as too large, which on the shard would fault the tenant.
pub const FRAME_BYTES_LIMIT: u64 = keel_engine::ENVELOPE_BYTES_MAX / 2;

impl ServerConfig {
    /// Defaults, overridden by `file` if it exists, then by `KEEL_*` variables.
    pub fn load(
        file: &Path,
        env: impl Iterator<Item = (String, String)>,
    ) -> anyhow::Result<ServerConfig> {
        let config = match std::fs::read_to_string(file) {
            Ok(text) => {
                toml::from_str(&text).map_err(|e| anyhow::anyhow!("{}: {e}", file.display()))?
            }
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => ServerConfig::default(),
            Err(error) => return Err(anyhow::anyhow!("{}: {error}", file.display())),
        };
        config.with_env(env)?.checked()
    }

    /// Refuses settings that would let one client's input fault a tenant.
    fn checked(self) -> anyhow::Result<ServerConfig> {
        if u64::from(self.frame_bytes_max) > FRAME_BYTES_LIMIT {
            anyhow::bail!(
                "frame_bytes_max = {}: at most {FRAME_BYTES_LIMIT} (half a journal record's \
                 limit, so that any instruction a frame holds fits a journal record)",
                self.frame_bytes_max
            );
        }
        Ok(self)
    }

    /// These settings, overridden by `KEEL_*` variables.
    pub fn with_env(
        mut self,
        env: impl Iterator<Item = (String, String)>,
    ) -> anyhow::Result<ServerConfig> {
        for (key, value) in env {
            let Some(name) = key.strip_prefix("KEEL_") else { continue };
            self.set(&name.to_ascii_lowercase(), &value)
                .map_err(|e| anyhow::anyhow!("{key}={value}: {e}"))?;
        }
        Ok(self)
    }

    fn set(&mut self, key: &str, value: &str) -> anyhow::Result<()> {
        match key {
            "listen" => self.listen = value.parse()?,
            "metrics_listen" => {
                self.metrics_listen = if value.is_empty() { None } else { Some(value.parse()?) }
            }
            "data_dir" => self.data_dir = PathBuf::from(value),
            "frame_bytes_max" => self.frame_bytes_max = value.parse()?,
            "batch_instructions_max" => self.batch_instructions_max = value.parse()?,
            "connections_max" => self.connections_max = value.parse()?,
            "idle_timeout_ms" => self.idle_timeout_ms = value.parse()?,
            "session_batches_in_flight_max" => {
                self.session_batches_in_flight_max = value.parse()?
            }
            "write_timeout_ms" => self.write_timeout_ms = value.parse()?,
            "checkpoint_interval" => self.checkpoint_interval = value.parse()?,
            "snapshot_interval" => self.snapshot_interval = value.parse()?,
            "reserve_trades" => self.reserve_trades = value.parse()?,
            "reserve_positions" => self.reserve_positions = value.parse()?,
            "journal_direct_io" => self.journal_direct_io = value.parse()?,
            "journal_preallocate" => self.journal_preallocate = value.parse()?,
            "journal_segment_bytes" => {
                let bytes: u64 = value.parse()?;
                anyhow::ensure!(
                    (SEGMENT_BYTES_MIN..=SEGMENT_BYTES_LIMIT).contains(&bytes),
                    "journal_segment_bytes = {bytes}: from {SEGMENT_BYTES_MIN} to {SEGMENT_BYTES_LIMIT}"
                );
                self.journal_segment_bytes = bytes;
            }
            "realtime_priority" => {
                self.realtime_priority = if value.is_empty() { None } else { Some(value.parse()?) }
            }
            // Variables for other tools (KEEL_LOG, ...) are not the server's.
            _ => {}
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_then_environment_override_defaults() {
        let dir = std::env::temp_dir().join(format!("keel-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("keel.toml");
        std::fs::write(&file, "listen = \"127.0.0.1:7100\"\nconnections_max = 8\n").unwrap();
        let env = [
            ("KEEL_CONNECTIONS_MAX".to_owned(), "9".to_owned()),
            ("PATH".to_owned(), "/bin".to_owned()),
        ];
        let config = ServerConfig::load(&file, env.into_iter()).unwrap();
        assert_eq!(config.listen.port(), 7100);
        assert_eq!(config.connections_max, 9);
        assert_eq!(config.frame_bytes_max, keel_wire::FRAME_BYTES_MAX);
        assert_eq!(config.realtime_priority, None, "the normal class unless asked");
        assert!(config.journal_direct_io, "direct journal writes unless turned off");
        let buffered = [("KEEL_JOURNAL_DIRECT_IO".to_owned(), "false".to_owned())];
        assert!(!ServerConfig::load(&file, buffered.into_iter()).unwrap().journal_direct_io);
        assert!(config.journal_preallocate, "preallocated segments unless turned off");
        let appends = [("KEEL_JOURNAL_PREALLOCATE".to_owned(), "false".to_owned())];
        assert!(!ServerConfig::load(&file, appends.into_iter()).unwrap().journal_preallocate);
        assert_eq!(config.journal_segment_bytes, 64 << 20);
        for (bytes, ok) in [("268435456", true), ("65535", false), ("4294967297", false)] {
            let env = [("KEEL_JOURNAL_SEGMENT_BYTES".to_owned(), bytes.to_owned())];
            let loaded = ServerConfig::load(&file, env.into_iter());
            assert_eq!(
                loaded.map(|c| c.journal_segment_bytes).ok(),
                ok.then(|| bytes.parse().unwrap())
            );
        }
        std::fs::write(&file, "realtime_priority = 20\n").unwrap();
        let config = ServerConfig::load(&file, std::iter::empty()).unwrap();
        assert_eq!(config.realtime_priority, Some(20));
        let unset = [("KEEL_REALTIME_PRIORITY".to_owned(), String::new())];
        assert_eq!(ServerConfig::load(&file, unset.into_iter()).unwrap().realtime_priority, None);
        std::fs::write(&file, "listen = 7\n").unwrap();
        assert!(ServerConfig::load(&file, std::iter::empty()).is_err());
        std::fs::write(&file, "no_such_key = 1\n").unwrap();
        assert!(ServerConfig::load(&file, std::iter::empty()).is_err());
        for (frame, ok) in [("8388608", true), ("8388609", false), ("4294967295", false)] {
            let env = [("KEEL_FRAME_BYTES_MAX".to_owned(), frame.to_owned())];
            let loaded = ServerConfig::load(&dir.join("absent.toml"), env.into_iter());
            assert_eq!(loaded.is_ok(), ok, "frame_bytes_max = {frame}");
        }
        let bad = [("KEEL_LISTEN".to_owned(), "nowhere".to_owned())];
        assert!(ServerConfig::load(&dir.join("absent.toml"), bad.into_iter()).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
