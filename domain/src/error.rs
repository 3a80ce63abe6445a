//! The classification every domain refusal shares, so the layers above can map any aggregate's
//! error to a response without knowing its variants.
//!
//! Each aggregate keeps its own error enum (one variant per rule, so tests assert the exact
//! refusal); this module only says which *kind* of refusal a variant is.

use serde::{Deserialize, Serialize};

/// What sort of refusal an error is. The HTTP status in each doc is the API's mapping, noted here
/// so the two stay in step; the domain itself knows nothing of HTTP.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    /// The input is invalid (422); `field()` names the offending input.
    Validation,
    /// The caller may not do this: wrong role or wrong side of the deal (403).
    Forbidden,
    /// The aggregate does not exist, or the caller is not a party and must not learn that it
    /// exists (404).
    NotFound,
    /// The current state does not allow this now, e.g. already approved, gig not open (409).
    Conflict,
    /// The payment gateway failed or did not answer (502/503); retrying later may succeed.
    Unavailable,
}

/// What every aggregate error offers, for code that handles them generically (the command
/// service's error mapping). Each error also has the same two methods inherently.
pub trait DomainError: std::error::Error {
    /// The kind of refusal.
    fn kind(&self) -> ErrorKind;
    /// For validation errors, the input field at fault (`"title"`, `"milestones"`, …).
    fn field(&self) -> Option<&'static str>;
}

/// Implements [`DomainError`] by delegating to the error's inherent `kind` and `field`.
macro_rules! impl_domain_error {
    ($error:ty) => {
        impl $crate::error::DomainError for $error {
            fn kind(&self) -> $crate::error::ErrorKind {
                <$error>::kind(self)
            }
            fn field(&self) -> Option<&'static str> {
                <$error>::field(self)
            }
        }
    };
}
pub(crate) use impl_domain_error;
