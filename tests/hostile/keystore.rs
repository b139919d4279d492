//! (placeholder: tests land with the fix)
