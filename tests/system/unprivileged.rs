//! Placeholder: filled in by the issue 14 work on this area.
#[allow(unused_imports)]
use crate::common::*;
