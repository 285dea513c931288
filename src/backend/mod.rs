//! The backend farm: stable slots for backend ids, per-backend status that outlives
//! reloads, and the immutable snapshot the proxy routes over.

pub mod cancel;
mod farm;
pub mod peer;
mod slots;
pub mod tls;
pub mod tls_failures;

// Health checking.
pub mod health;
pub mod probe;

pub use farm::{Backend, Farm};
pub use slots::{BackendSlot, BackendStatus, SlotRegistry};

pub use health::{HealthTable, Outcome, Thresholds, Transition};
