//! Embedded defaults, so that keel runs with no files of its own: the shipped instrument master
//! and the demo tenant's accounts.

/// `examples/instruments.csv`, compiled in.
pub const INSTRUMENTS_CSV: &str = include_str!("../examples/instruments.csv");
/// `examples/accounts.csv`, compiled in.
pub const ACCOUNTS_CSV: &str = include_str!("../examples/accounts.csv");
/// The tenant offline tools and the demo server use unless told otherwise.
pub const DEMO_TENANT: &str = "demo";
