//! How results are printed: a command's own text, JSON as the AWS CLI v2
//! prints it (four-space indent, UTF-8 as is), or the AWS CLI's text form
//! derived from that JSON; and `--query`, the single-field subset of
//! JMESPath that picks one part of the JSON before it is printed.

use std::borrow::Cow;
use std::sync::OnceLock;

use clap::ValueEnum;
use serde_json::Value;
use zeroize::{Zeroize, Zeroizing};

use super::Failure;

/// `--output` as given on the command line.
#[derive(Clone, Copy, Debug, ValueEnum, PartialEq, Eq)]
pub enum OutputFormat {
    Text,
    Json,
}

/// How a command prints its result, decided once per run from
/// `--output`, `--query` and whether the command is a `kms` one.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Output {
    /// The command's own text (commands other than `kms`).
    #[default]
    Text,
    /// The JSON result (the default of `kms` commands).
    Json,
    /// The AWS CLI's text form of the JSON result (`kms --output text`).
    AwsText,
}

impl Output {
    /// The output of a run: `kms` commands print JSON unless told
    /// `--output text`, which is then the AWS CLI's text form; other
    /// commands print their own text unless told `--output json`. A
    /// query picks from the JSON, so on other commands it means JSON.
    pub fn resolve(given: Option<OutputFormat>, kms: bool, query: bool) -> Result<Output, Failure> {
        Ok(match (given, kms) {
            (Some(OutputFormat::Text), true) => Output::AwsText,
            (_, true) | (Some(OutputFormat::Json), false) => Output::Json,
            (None, false) if query => Output::Json,
            (None, false) => Output::Text,
            (Some(OutputFormat::Text), false) if query => {
                return Err(Failure::Usage(
                    "--query picks from the JSON result: this command's --output text is not JSON (use --output json)".into(),
                ))
            }
            (Some(OutputFormat::Text), false) => Output::Text,
        })
    }
}

/// The run's `--query`, set once before the command runs.
static QUERY: OnceLock<Query> = OnceLock::new();

/// Parses `--query` (a usage error before anything runs if it is not of
/// the supported forms) and keeps it for [`print_result`].
pub fn set_query(text: Option<&str>) -> Result<(), Failure> {
    if let Some(t) = text {
        let q = Query::parse(t).map_err(Failure::Usage)?;
        // Set once per process; a second call keeps the first query.
        let _ = QUERY.set(q);
    }
    Ok(())
}

/// Prints a command's result on stdout: `text` is the command's own text
/// (which kms commands never print), `value` the JSON the other outputs
/// come from. A reader that went away (`| head`) ends the command quietly;
/// nothing else is left to say. A result may hold a plaintext or private
/// key: what is printed is made in one zeroized buffer (the caller wipes
/// `value` with [`wipe`]).
pub fn print_result(out: Output, value: &Value, text: &str) {
    use std::io::Write;
    let body = render(out, QUERY.get(), value, text);
    let Some(body) = body else { return };
    let mut stdout = std::io::stdout().lock();
    let r = stdout
        .write_all(body.as_bytes())
        .and_then(|()| stdout.flush());
    if let Err(e) = r {
        std::process::exit(Failure::stdout("cannot write the result", e).tell())
    }
}

/// Prints a `kms` command's result: its JSON, or the AWS CLI's text form
/// of it (a `kms` command has no text of its own).
pub fn print_aws(out: Output, value: &Value) {
    print_result(out, value, "")
}

/// Zeroizes every string of a result (its plaintexts and private keys)
/// once it is printed.
pub fn wipe(value: &mut Value) {
    match value {
        Value::String(s) => s.zeroize(),
        Value::Array(a) => a.iter_mut().for_each(wipe),
        Value::Object(m) => m.values_mut().for_each(wipe),
        _ => {}
    }
}

/// What [`print_result`] writes, newline included; None for nothing (an
/// empty JSON object, as the AWS CLI prints nothing for it). Made at its
/// exact size, so no grown-out-of copy of a secret is left unzeroized.
pub fn render(
    out: Output,
    query: Option<&Query>,
    value: &Value,
    text: &str,
) -> Option<Zeroizing<String>> {
    if out == Output::Text {
        return Some(exactly(|w| writeln!(w, "{text}")));
    }
    let mut picked = query.map(|q| q.apply(value));
    let value = picked.as_ref().unwrap_or(value);
    let body = match out {
        Output::Json if value.as_object().is_some_and(|m| m.is_empty()) => None,
        Output::Json => Some(aws_json(value)),
        _ => Some(exactly(|w| aws_text(value, None, None, w))),
    };
    if let Some(p) = picked.as_mut() {
        wipe(p);
    }
    body
}

/// Counts what is written, to size a buffer before writing into it.
#[derive(Default)]
struct Counter(usize);

impl std::fmt::Write for Counter {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        self.0 += s.len();
        Ok(())
    }
}

impl std::io::Write for Counter {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0 += b.len();
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// What `write` writes, in a zeroized string allocated once at its size.
fn exactly(write: impl Fn(&mut dyn std::fmt::Write) -> std::fmt::Result) -> Zeroizing<String> {
    let mut n = Counter::default();
    let _ = write(&mut n);
    let mut s = Zeroizing::new(String::with_capacity(n.0));
    // Writing to a String cannot fail.
    let _ = write(&mut *s);
    s
}

/// JSON as the AWS CLI v2 prints it: `json.dump(indent=4, ensure_ascii=False)`.
fn aws_json(value: &Value) -> Zeroizing<String> {
    use serde::Serialize;
    let pretty = |w: &mut dyn std::io::Write| {
        let fmt = serde_json::ser::PrettyFormatter::with_indent(b"    ");
        let mut ser = serde_json::Serializer::with_formatter(w, fmt);
        value.serialize(&mut ser)
    };
    let mut n = Counter::default();
    let _ = pretty(&mut n);
    let mut buf = Zeroizing::new(Vec::with_capacity(n.0 + 1));
    let _ = pretty(&mut *buf);
    buf.push(b'\n');
    // serde_json writes UTF-8; a failure leaves bytes that are not.
    match std::str::from_utf8(&buf) {
        Ok(text) => exactly(|w| w.write_str(text)),
        Err(_) => exactly(|w| writeln!(w, "{value}")),
    }
}

/// A scalar as Python's `str()` shows it in the AWS CLI's text output.
fn scalar(v: &Value) -> Cow<'_, str> {
    match v {
        Value::String(s) => Cow::Borrowed(s),
        Value::Bool(true) => "True".into(),
        Value::Bool(false) => "False".into(),
        Value::Null => "None".into(),
        other => other.to_string().into(),
    }
}

fn is_scalar(v: &Value) -> bool {
    !(v.is_object() || v.is_array())
}

/// The AWS CLI's text form (awscli/text.py): a dict's scalars on one
/// tab-separated line in key order, led by its key in capitals when it
/// sits under one; then its lists and dicts, each under its own key. A
/// list of dicts is one line per dict, the columns being every scalar key
/// any of them has; a list of scalars under a key is one line per item.
fn aws_text(item: &Value, identifier: Option<&str>, keys: Option<&[String]>, out: Out) -> Wrote {
    match item {
        Value::Object(m) => text_dict(m, identifier, keys, out),
        Value::Array(a) => text_list(a, identifier, out),
        s => writeln!(out, "{}", scalar(s)),
    }
}

/// Where the text form is written (a counter, then the buffer), straight
/// from the values: no copy of a string is made on the way.
type Out<'a> = &'a mut dyn std::fmt::Write;
type Wrote = std::fmt::Result;

fn text_list(items: &[Value], identifier: Option<&str>, out: Out) -> Wrote {
    if items.is_empty() {
        return Ok(());
    }
    if items.iter().any(Value::is_object) {
        let mut keys: Vec<String> = items
            .iter()
            .filter_map(Value::as_object)
            .flat_map(|m| m.iter().filter(|(_, v)| is_scalar(v)).map(|(k, _)| k))
            .cloned()
            .collect();
        keys.sort();
        keys.dedup();
        for el in items {
            aws_text(el, identifier, Some(&keys), out)?;
        }
    } else if items.iter().any(Value::is_array) {
        let scalars: Vec<&Value> = items.iter().filter(|v| is_scalar(v)).collect();
        if !scalars.is_empty() {
            text_scalars(&scalars, identifier, out)?;
        }
        for nested in items.iter().filter(|v| !is_scalar(v)) {
            aws_text(nested, identifier, None, out)?;
        }
    } else {
        text_scalars(&items.iter().collect::<Vec<_>>(), identifier, out)?;
    }
    Ok(())
}

/// One tab-separated line.
fn text_line<'a>(fields: impl Iterator<Item = Cow<'a, str>>, out: Out) -> Wrote {
    for (i, f) in fields.enumerate() {
        if i > 0 {
            out.write_char('\t')?;
        }
        out.write_str(&f)?;
    }
    out.write_char('\n')
}

fn text_scalars(items: &[&Value], identifier: Option<&str>, out: Out) -> Wrote {
    match identifier {
        Some(id) => {
            for v in items {
                writeln!(out, "{}\t{}", id.to_uppercase(), scalar(v))?;
            }
            Ok(())
        }
        None => text_line(items.iter().map(|v| scalar(v)), out),
    }
}

fn text_dict(
    m: &serde_json::Map<String, Value>,
    identifier: Option<&str>,
    keys: Option<&[String]>,
    out: Out,
) -> Wrote {
    let mut scalars: Vec<(&String, Cow<str>)> = Vec::new();
    let mut nested: Vec<(&String, &Value)> = Vec::new();
    match keys {
        // A dict of a list: the list's columns, empty where it has none.
        Some(keys) => {
            for k in keys {
                scalars.push((k, m.get(k).map(scalar).unwrap_or_default()));
            }
            nested.extend(m.iter().filter(|(k, _)| !keys.contains(k)));
        }
        None => {
            for (k, v) in m {
                if is_scalar(v) {
                    scalars.push((k, scalar(v)));
                } else {
                    nested.push((k, v));
                }
            }
        }
    }
    // In key order whatever order the map keeps.
    scalars.sort_by(|a, b| a.0.cmp(b.0));
    nested.sort_by(|a, b| a.0.cmp(b.0));
    if !scalars.is_empty() {
        let id = identifier.map(|id| Cow::Owned(id.to_uppercase()));
        text_line(
            id.into_iter().chain(scalars.into_iter().map(|(_, v)| v)),
            out,
        )?;
    }
    for (k, v) in nested {
        aws_text(v, Some(k), None, out)?;
    }
    Ok(())
}

/// One step of a query.
#[derive(Debug, Clone, PartialEq)]
enum Step {
    /// `Name` or `.Name`: a field of an object.
    Field(String),
    /// `[N]`: an item of a list (negative from the end).
    Index(i64),
    /// `[*]`: the rest of the query over each item of a list.
    Each,
    /// `[]`: a list with its nested lists flattened one level, then as `[*]`.
    Flatten,
}

/// A `--query` of the single-field forms: field names joined by dots,
/// with `[N]`, `[*]` and `[]` after any of them (`Plaintext`,
/// `KeyMetadata.Arn`, `Keys[0].KeyId`, `Keys[*].KeyId`).
#[derive(Debug, Clone, PartialEq)]
pub struct Query {
    steps: Vec<Step>,
}

impl Query {
    pub fn parse(text: &str) -> Result<Query, String> {
        let unsupported = |why: &str| {
            format!(
                "--query {text:?}: {why}; supported here are field names joined by dots, each optionally followed by [N], [*] or [] (for example KeyMetadata.Arn, Keys[0].KeyId, Keys[*].KeyId)"
            )
        };
        let chars: Vec<char> = text.trim().chars().collect();
        let mut steps = Vec::new();
        let mut i = 0;
        let mut want_field = true;
        while i < chars.len() {
            let c = chars[i];
            if c == '[' {
                let end = chars[i..]
                    .iter()
                    .position(|&c| c == ']')
                    .map(|p| i + p)
                    .ok_or_else(|| unsupported("an unclosed ["))?;
                let inner: String = chars[i + 1..end].iter().collect();
                steps.push(match inner.trim() {
                    "*" => Step::Each,
                    "" => Step::Flatten,
                    n => {
                        Step::Index(n.parse().map_err(|_| {
                            unsupported(&format!("[{inner}] is not [N], [*] or []"))
                        })?)
                    }
                });
                i = end + 1;
                want_field = false;
            } else if c == '.' && !want_field && !steps.is_empty() {
                i += 1;
                want_field = true;
                if i >= chars.len() || !is_ident_start(chars[i]) {
                    return Err(unsupported("a dot must be followed by a field name"));
                }
            } else if want_field && is_ident_start(c) {
                let len = chars[i..]
                    .iter()
                    .take_while(|c| c.is_ascii_alphanumeric() || **c == '_')
                    .count();
                steps.push(Step::Field(chars[i..i + len].iter().collect()));
                i += len;
                want_field = false;
            } else {
                return Err(unsupported(&format!(
                    "{c:?} at offset {i} is not supported"
                )));
            }
        }
        if steps.is_empty() {
            return Err(unsupported("it is empty"));
        }
        Ok(Query { steps })
    }

    /// The part of `value` the query names; null where it names nothing.
    pub fn apply(&self, value: &Value) -> Value {
        eval(&self.steps, value)
    }
}

fn is_ident_start(c: char) -> bool {
    c.is_ascii_alphabetic() || c == '_'
}

fn eval(steps: &[Step], v: &Value) -> Value {
    // As in JMESPath, `[]` flattens what all of the query left of it gives
    // (a projection included), and projects the rest over that.
    if let Some(f) = steps.iter().rposition(|s| *s == Step::Flatten) {
        let Value::Array(left) = eval(&steps[..f], v) else {
            return Value::Null;
        };
        let flat: Vec<&Value> = left
            .iter()
            .flat_map(|x| match x {
                Value::Array(inner) => inner.iter().collect::<Vec<_>>(),
                other => vec![other],
            })
            .collect();
        return project(&steps[f + 1..], flat.into_iter());
    }
    let Some((step, rest)) = steps.split_first() else {
        return v.clone();
    };
    match (step, v) {
        (Step::Field(f), Value::Object(m)) => m.get(f).map_or(Value::Null, |x| eval(rest, x)),
        (Step::Index(n), Value::Array(a)) => {
            let at = if *n < 0 {
                a.len().checked_sub(n.unsigned_abs() as usize)
            } else {
                Some(*n as usize)
            };
            at.and_then(|i| a.get(i))
                .map_or(Value::Null, |x| eval(rest, x))
        }
        (Step::Each, Value::Array(a)) => project(rest, a.iter()),
        _ => Value::Null,
    }
}

/// The rest of a query over each item; items it names nothing in are left
/// out, as JMESPath projections leave them.
fn project<'a>(rest: &[Step], items: impl Iterator<Item = &'a Value>) -> Value {
    Value::Array(
        items
            .map(|x| eval(rest, x))
            .filter(|x| !x.is_null())
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn shown(out: Output, q: Option<&Query>, v: &Value, text: &str) -> Option<String> {
        render(out, q, v, text).map(|s| s.to_string())
    }

    fn text(v: &Value) -> String {
        let mut s = String::new();
        aws_text(v, None, None, &mut s).unwrap();
        s
    }

    #[test]
    fn text_form_is_the_aws_clis() {
        // A dict's scalars on one line in key order; lists under their
        // key in capitals.
        let dk = json!({"Plaintext": "UA==", "KeyId": "arn:k", "CiphertextBlob": "Q0I="});
        assert_eq!(text(&dk), "Q0I=\tarn:k\tUA==\n");
        let describe = json!({"KeyMetadata": {"KeyId": "k", "Enabled": true,
            "EncryptionAlgorithms": ["SYMMETRIC_DEFAULT"], "Description": ""}});
        assert_eq!(
            text(&describe),
            "KEYMETADATA\t\tTrue\tk\nENCRYPTIONALGORITHMS\tSYMMETRIC_DEFAULT\n"
        );
        // A list of dicts: one line each, columns from every dict.
        let keys = json!({"Keys": [{"KeyId": "a", "KeyArn": "arn:a"}, {"KeyId": "b"}],
            "Truncated": false});
        assert_eq!(text(&keys), "False\nKEYS\tarn:a\ta\nKEYS\t\tb\n");
        // Nested lists, bare lists, scalars.
        assert_eq!(text(&json!(["a", "b"])), "a\tb\n");
        assert_eq!(text(&json!([["a", "b"], "c"])), "c\na\tb\n");
        assert_eq!(text(&json!("x")), "x\n");
        assert_eq!(text(&json!(null)), "None\n");
        assert_eq!(text(&json!({"Tags": []})), "");
        let tags = json!({"Tags": [{"TagKey": "k", "TagValue": "v"}], "Truncated": true,
            "NextMarker": "m"});
        assert_eq!(text(&tags), "m\tTrue\nTAGS\tk\tv\n");
    }

    #[test]
    fn json_is_indented_by_four_and_empty_objects_print_nothing() {
        let v = json!({"KeyId": "ü", "N": [1]});
        assert_eq!(
            shown(Output::Json, None, &v, "").unwrap(),
            "{\n    \"KeyId\": \"ü\",\n    \"N\": [\n        1\n    ]\n}\n"
        );
        assert_eq!(shown(Output::Json, None, &json!({}), ""), None);
        assert_eq!(
            shown(Output::Text, None, &v, "own text").unwrap(),
            "own text\n"
        );
    }

    #[test]
    fn queries_pick_single_fields_and_projections() {
        let v = json!({
            "KeyMetadata": {"Arn": "arn:a", "EncryptionAlgorithms": ["SYMMETRIC_DEFAULT"]},
            "Keys": [{"KeyId": "a"}, {"KeyId": "b"}, {"Other": 1}],
            "Nested": [[1, 2], [3]],
            "Plaintext": "UA==",
        });
        let q = |s: &str| Query::parse(s).unwrap().apply(&v);
        assert_eq!(q("Plaintext"), json!("UA=="));
        assert_eq!(q("KeyMetadata.Arn"), json!("arn:a"));
        assert_eq!(
            q("KeyMetadata.EncryptionAlgorithms[0]"),
            json!("SYMMETRIC_DEFAULT")
        );
        assert_eq!(q("Keys[0].KeyId"), json!("a"));
        assert_eq!(q("Keys[-1].Other"), json!(1));
        assert_eq!(q("Keys[*].KeyId"), json!(["a", "b"]));
        assert_eq!(q("Keys[].KeyId"), json!(["a", "b"]));
        assert_eq!(q("Nested[]"), json!([1, 2, 3]));
        assert_eq!(q("Missing"), Value::Null);
        assert_eq!(q("Keys[9].KeyId"), Value::Null);
        assert_eq!(q("Plaintext.X"), Value::Null);
        // A scalar prints quoted in JSON, bare in text.
        let p = Query::parse("Plaintext").unwrap();
        assert_eq!(shown(Output::Json, Some(&p), &v, "").unwrap(), "\"UA==\"\n");
        assert_eq!(shown(Output::AwsText, Some(&p), &v, "").unwrap(), "UA==\n");
        let ids = Query::parse("Keys[*].KeyId").unwrap();
        assert_eq!(
            shown(Output::AwsText, Some(&ids), &v, "").unwrap(),
            "a\tb\n"
        );
        for bad in [
            "",
            "Keys[?KeyId=='a']",
            "Keys | [0]",
            "length(Keys)",
            "{a: Plaintext}",
            "Keys[0",
            "KeyMetadata.",
            ".Arn",
            "Keys[x]",
            "KeyMetadata.*",
        ] {
            let e = Query::parse(bad).unwrap_err();
            assert!(e.starts_with("--query "), "{bad}: {e}");
            assert!(e.contains("Keys[*].KeyId"), "{bad}: {e}");
        }
    }

    #[test]
    fn kms_commands_default_to_json_and_others_to_their_text() {
        use OutputFormat::*;
        let r = |g, kms, q| Output::resolve(g, kms, q).ok();
        assert_eq!(r(None, true, false), Some(Output::Json));
        assert_eq!(r(Some(Json), true, false), Some(Output::Json));
        assert_eq!(r(Some(Text), true, true), Some(Output::AwsText));
        assert_eq!(r(None, false, false), Some(Output::Text));
        assert_eq!(r(None, false, true), Some(Output::Json));
        assert_eq!(r(Some(Json), false, false), Some(Output::Json));
        assert_eq!(r(Some(Text), false, false), Some(Output::Text));
        assert_eq!(r(Some(Text), false, true), None);
    }

    #[test]
    fn a_rendered_result_is_one_buffer_of_its_exact_size() {
        // A buffer that grew left its earlier allocations, copies of any
        // plaintext or private key in the result, to the allocator unwiped.
        let secret = "S".repeat(5000);
        let v = json!({"Plaintext": secret, "KeyId": "arn:k", "N": 7,
            "Keys": [{"A": secret}, {"B": true}], "List": ["x", secret, null]});
        let query = Query::parse("Keys[*].A").unwrap();
        for out in [Output::Json, Output::AwsText, Output::Text] {
            for q in [None, Some(&query)] {
                let body = render(out, q, &v, &secret).unwrap();
                assert!(body.contains(&secret), "{out:?} {q:?}");
                assert_eq!(body.capacity(), body.len(), "{out:?} {q:?}");
            }
        }
        let mut wiped = v.clone();
        wipe(&mut wiped);
        assert_eq!(
            wiped,
            json!({"Plaintext": "", "KeyId": "", "N": 7,
                "Keys": [{"A": ""}, {"B": true}], "List": ["", "", null]})
        );
    }

    #[test]
    fn a_flatten_applies_to_the_whole_projection_to_its_left() {
        // JMESPath: `[]` flattens what everything left of it gives, so
        // `Keys[*].L[]` is one list, not one list per key.
        let v = json!({"Keys": [{"L": [1, 2]}, {"L": [3]}, {"M": 0}],
            "Deep": [{"A": [{"B": [1]}, {"B": [2, 3]}]}, {"A": [{"B": [4]}]}]});
        let q = |s: &str| Query::parse(s).unwrap().apply(&v);
        assert_eq!(q("Keys[*].L[]"), json!([1, 2, 3]));
        assert_eq!(q("Keys[].L[]"), json!([1, 2, 3]));
        assert_eq!(q("Keys[*].L"), json!([[1, 2], [3]]));
        assert_eq!(q("Keys[*].L[0]"), json!([1, 3]));
        assert_eq!(q("Keys[*].L[][0]"), json!([]));
        assert_eq!(q("Deep[].A[].B[]"), json!([1, 2, 3, 4]));
        assert_eq!(q("Deep[*].A[*].B[0]"), json!([[1, 2], [4]]));
        assert_eq!(q("Keys[0].L[]"), json!([1, 2]));
    }
}
