//! The key agent's wire protocol: length-prefixed JSON frames over a Unix
//! socket (a big-endian u32 length, then that many bytes of JSON). A request
//! is `{"Operation": NAME, ...AWS's request parameters}`; a response is
//! AWS's response JSON, or `{"__type": NAME, "message": TEXT}` as AWS's JSON
//! protocol reports an error.

pub mod client;

use std::io::{self, Read, Write};
use std::path::PathBuf;

use serde_json::{json, Value};
use zeroize::Zeroizing;

use super::KmsError;

/// The default socket of the agent.
pub const DEFAULT_SOCKET: &str = "/run/envelopefs-agent/agent.sock";

/// The largest request the agent reads.
pub const MAX_REQUEST: usize = 64 << 10;

/// The largest response a client reads (a ListKeys page, a public key).
pub const MAX_RESPONSE: usize = 4 << 20;

/// The variable that moves the default socket, for the tests only (they
/// cannot take over /run/envelopefs-agent of the machine).
pub const TEST_DEFAULT_SOCKET_VAR: &str = "ENVELOPEFS_TEST_DEFAULT_AGENT_SOCKET";

/// The socket a volume whose key is in a store this user cannot open is
/// sent to: [`DEFAULT_SOCKET`] (or, in the tests, the socket
/// [`TEST_DEFAULT_SOCKET_VAR`] names).
pub fn default_socket() -> PathBuf {
    std::env::var_os(TEST_DEFAULT_SOCKET_VAR)
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(DEFAULT_SOCKET))
}

/// Write one frame.
pub fn write_frame(w: &mut impl Write, body: &[u8]) -> io::Result<()> {
    let len = u32::try_from(body.len())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "frame too long"))?;
    let mut out = Zeroizing::new(Vec::with_capacity(4 + body.len()));
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(body);
    w.write_all(&out)?;
    w.flush()
}

/// Read one frame of at most `max` bytes; `Ok(None)` at a clean end of stream.
pub fn read_frame(r: &mut impl Read, max: usize) -> io::Result<Option<Zeroizing<Vec<u8>>>> {
    let mut len = [0u8; 4];
    match r.read_exact(&mut len) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e),
    }
    let n = u32::from_be_bytes(len) as usize;
    if n > max {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("a frame of {n} bytes, over the limit of {max}"),
        ));
    }
    let mut body = Zeroizing::new(vec![0u8; n]);
    r.read_exact(&mut body)?;
    Ok(Some(body))
}

/// The error as AWS's JSON protocol sends it.
pub fn error_json(e: &KmsError) -> Value {
    let text = e.to_string();
    let prefix = format!("{}: ", e.name());
    let message = text.strip_prefix(&prefix).unwrap_or(&text);
    json!({"__type": e.name(), "message": message})
}

/// The error an error response names (the names KmsError prints).
pub fn error_of(v: &Value) -> Option<KmsError> {
    let name = v.get("__type")?.as_str()?;
    let msg = v
        .get("message")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_owned();
    Some(match name {
        "NotFoundException" => KmsError::NotFound(msg),
        "DisabledException" => KmsError::Disabled(msg),
        "KMSInvalidStateException" => KmsError::InvalidState(msg),
        "InvalidCiphertextException" => KmsError::InvalidCiphertext,
        "IncorrectKeyException" => KmsError::IncorrectKey(msg),
        "AccessDeniedException" => KmsError::AccessDenied(msg),
        "ValidationException" => KmsError::Validation(msg),
        "InvalidAliasNameException" => KmsError::InvalidAliasName(msg),
        "AlreadyExistsException" => KmsError::AlreadyExists(msg),
        "LimitExceededException" => KmsError::LimitExceeded(msg),
        "UnsupportedOperationException" => KmsError::UnsupportedOperation(msg),
        "InvalidKeyUsageException" => KmsError::InvalidKeyUsage(msg),
        "KMSInvalidSignatureException" => KmsError::InvalidSignature,
        _ => KmsError::Unavailable(format!("the key agent: {name}: {msg}")),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip_and_an_oversized_one_is_refused() {
        let mut buf = Vec::new();
        write_frame(&mut buf, b"{\"a\":1}").unwrap();
        assert_eq!(&buf[..4], &[0, 0, 0, 7]);
        let got = read_frame(&mut &buf[..], 100).unwrap().unwrap();
        assert_eq!(&got[..], b"{\"a\":1}");
        assert!(read_frame(&mut &buf[..], 3).is_err());
        assert!(read_frame(&mut &[][..], 3).unwrap().is_none());
    }

    #[test]
    fn errors_travel_as_aws_json_errors() {
        let e = KmsError::AccessDenied("User: u is not authorized".into());
        let v = error_json(&e);
        assert_eq!(
            v,
            json!({"__type": "AccessDeniedException", "message": "User: u is not authorized"})
        );
        assert_eq!(error_of(&v).unwrap().to_string(), e.to_string());
    }
}
