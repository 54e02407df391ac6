//! The retry policy's old path, kept so `services::retry::RetryPolicy` (used by `client` and by
//! `sim`) still resolves. The code lives in `resilience::retry`, next to the budget, the breaker,
//! the rate limiter and the bulkhead that every caller shares.

pub use crate::resilience::retry::*;
