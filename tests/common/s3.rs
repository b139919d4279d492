//! A local S3 API server for the `s3` feature's tests: moto's server on
//! 127.0.0.1 (a free port), with one bucket, killed on drop. It keeps objects
//! in memory: keep test volumes small. Multipart parts may be as small as
//! `PART_MIN` (S3 itself wants 5 MiB), so that a test's object of a few
//! hundred KiB goes up in several parts.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::missing_prerequisite;

/// The smallest part (but the last) the server accepts.
pub const PART_MIN: u64 = 64 << 10;

/// The bucket every server starts with.
pub const BUCKET: &str = "envelopefs-test";

pub struct S3Server {
    child: Child,
    pub port: u16,
    /// `http://127.0.0.1:PORT`
    pub endpoint: String,
}

impl Drop for S3Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("no free port on 127.0.0.1")
}

/// One HTTP/1.1 request without a body to 127.0.0.1:`port`: the status and
/// the raw answer. moto checks no signature, but reads an unsigned request
/// as an anonymous one, which a private bucket refuses.
pub fn raw_request(port: u16, method: &str, path: &str) -> (u16, String) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect to the S3 server");
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n{AUTH}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut answer = Vec::new();
    s.read_to_end(&mut answer).unwrap();
    let answer = String::from_utf8_lossy(&answer).into_owned();
    let status = answer
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    (status, answer)
}

/// A header's value in a raw answer (case-insensitive name).
pub fn header(answer: &str, name: &str) -> Option<String> {
    let head = answer.split("\r\n\r\n").next()?;
    head.lines().skip(1).find_map(|l| {
        let (n, v) = l.split_once(':')?;
        n.trim()
            .eq_ignore_ascii_case(name)
            .then(|| v.trim().to_owned())
    })
}

const AUTH: &str = "Authorization: AWS4-HMAC-SHA256 \
    Credential=test/20260101/us-east-1/s3/aws4_request, SignedHeaders=host, Signature=00";

impl S3Server {
    /// A running server with the bucket `BUCKET`, or None when moto is
    /// missing (the skip recorded; under CI=true the test fails).
    pub fn start(test: &str) -> Option<S3Server> {
        let port = free_port();
        // `python3 -m moto.server` works without the console script on PATH.
        let child = Command::new("python3")
            .args(["-m", "moto.server", "-H", "127.0.0.1", "-p"])
            .arg(port.to_string())
            .env("S3_UPLOAD_PART_MIN_SIZE", PART_MIN.to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn();
        let child = match child {
            Ok(c) => c,
            Err(e) => {
                missing_prerequisite(test, &format!("no python3 for moto ({e})"));
                return None;
            }
        };
        let mut server = S3Server {
            child,
            port,
            endpoint: format!("http://127.0.0.1:{port}"),
        };
        let t0 = Instant::now();
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            if let Ok(Some(st)) = server.child.try_wait() {
                missing_prerequisite(test, &format!("moto is not installed (exit {st})"));
                return None;
            }
            assert!(
                t0.elapsed() < Duration::from_secs(60),
                "moto did not start in 60 s"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        server.create_bucket(BUCKET);
        Some(server)
    }

    pub fn create_bucket(&self, name: &str) {
        let (status, answer) = raw_request(self.port, "PUT", &format!("/{name}"));
        assert_eq!(status, 200, "CreateBucket {name}: {answer}");
    }

    /// `s3://BUCKET/prefix`
    pub fn url(&self, prefix: &str) -> String {
        format!("s3://{BUCKET}/{prefix}")
    }

    /// The standard AWS configuration pointing at this server, with dummy
    /// credentials and nothing read from the machine's own AWS files.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("AWS_ENDPOINT_URL_S3", self.endpoint.clone()),
            ("AWS_ACCESS_KEY_ID", "test".into()),
            ("AWS_SECRET_ACCESS_KEY", "test".into()),
            ("AWS_REGION", "us-east-1".into()),
            ("AWS_EC2_METADATA_DISABLED", "true".into()),
            ("AWS_CONFIG_FILE", "/nonexistent".into()),
            ("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent".into()),
        ]
    }

    /// Variables of the machine that would take precedence or mislead.
    const UNSET: [&'static str; 4] = [
        "AWS_PROFILE",
        "AWS_SESSION_TOKEN",
        "AWS_ENDPOINT_URL",
        "AWS_MAX_ATTEMPTS",
    ];

    /// Give a child process (`envelopefs snapshot push ...`) this server.
    pub fn apply(&self, c: &mut Command) {
        for v in Self::UNSET {
            c.env_remove(v);
        }
        c.envs(self.env());
    }

    /// Point this process's own S3 clients at this server. The environment
    /// is the process's: tests doing this hold one lock while they run.
    pub fn set_process_env(&self) {
        for v in Self::UNSET {
            std::env::remove_var(v);
        }
        for (k, v) in self.env() {
            std::env::set_var(k, v);
        }
    }
}

/// One HTTP/1.1 request with a body to 127.0.0.1:`port`: the status and the
/// answer's body (chunked transfer decoded).
pub fn request(port: u16, method: &str, path: &str, body: &[u8]) -> (u16, Vec<u8>) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect to the S3 server");
    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n{AUTH}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .unwrap();
    s.write_all(body).unwrap();
    let mut answer = Vec::new();
    s.read_to_end(&mut answer).unwrap();
    let split = answer
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("an HTTP answer");
    let head = String::from_utf8_lossy(&answer[..split]).into_owned();
    let rest = &answer[split + 4..];
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let chunked = head
        .lines()
        .any(|l| l.to_ascii_lowercase().starts_with("transfer-encoding:") && l.contains("chunked"));
    (
        status,
        if chunked {
            dechunk(rest)
        } else {
            rest.to_vec()
        },
    )
}

fn dechunk(mut b: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let eol = b
            .windows(2)
            .position(|w| w == b"\r\n")
            .expect("a chunk size");
        let size = usize::from_str_radix(
            String::from_utf8_lossy(&b[..eol])
                .split(';')
                .next()
                .unwrap()
                .trim(),
            16,
        )
        .expect("a hex chunk size");
        if size == 0 {
            return out;
        }
        out.extend_from_slice(&b[eol + 2..eol + 2 + size]);
        b = &b[eol + 2 + size + 2..];
    }
}

impl S3Server {
    /// The object's bytes, or None when the server has none (404).
    pub fn get_object(&self, key: &str) -> Option<Vec<u8>> {
        let (status, body) = request(self.port, "GET", &format!("/{BUCKET}/{key}"), b"");
        match status {
            200 => Some(body),
            404 => None,
            s => panic!("GET {key}: {s}: {}", String::from_utf8_lossy(&body)),
        }
    }

    pub fn put_object(&self, key: &str, body: &[u8]) {
        let (status, answer) = request(self.port, "PUT", &format!("/{BUCKET}/{key}"), body);
        assert_eq!(
            status,
            200,
            "PUT {key}: {}",
            String::from_utf8_lossy(&answer)
        );
    }

    pub fn delete_object(&self, key: &str) {
        let (status, answer) = request(self.port, "DELETE", &format!("/{BUCKET}/{key}"), b"");
        assert_eq!(
            status,
            204,
            "DELETE {key}: {}",
            String::from_utf8_lossy(&answer)
        );
    }

    /// (key, size) of the objects under `prefix`, sorted (one page: test
    /// repositories hold far fewer than 1,000 objects).
    pub fn list_objects(&self, prefix: &str) -> Vec<(String, u64)> {
        let path = format!("/{BUCKET}?list-type=2&max-keys=1000&prefix={prefix}");
        let (status, body) = request(self.port, "GET", &path, b"");
        let xml = String::from_utf8_lossy(&body).into_owned();
        assert_eq!(status, 200, "LIST {prefix}: {xml}");
        assert!(
            !xml.contains("<IsTruncated>true"),
            "LIST {prefix}: truncated"
        );
        let field = |c: &str, tag: &str| -> String {
            let open = format!("<{tag}>");
            let from = c.find(&open).map(|i| i + open.len()).unwrap_or(0);
            let to = c[from..].find('<').map_or(c.len(), |i| from + i);
            c[from..to].to_owned()
        };
        let mut out: Vec<(String, u64)> = xml
            .split("<Contents>")
            .skip(1)
            .map(|c| (field(c, "Key"), field(c, "Size").parse().unwrap_or(0)))
            .collect();
        out.sort();
        out
    }
}
