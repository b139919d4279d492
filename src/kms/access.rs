//! The one decision the key agent asks for every request: the key's policy
//! and grants ([`super::policy`]), explicit Deny first.

pub use super::policy::{authorize, named_resource, AccessRequest, Caller};
