//! Tags and descriptions: tag-resource, untag-resource, list-resource-tags
//! and update-key-description.

use clap::Args;
use serde_json::Value;

use super::super::Failure;
use super::pages::PageArgs;
use super::{read_arg_file, usage};

#[derive(Args, Debug)]
pub struct TagResourceArgs {
    /// The key to tag (key ID or key ARN).
    #[arg(long)]
    pub(super) key_id: String,
    /// Tags as the AWS CLI takes them: `TagKey=K,TagValue=V` (one such
    /// argument per tag), a JSON list `[{"TagKey":"K","TagValue":"V"}]`,
    /// or file://FILE holding that JSON.
    #[arg(long, num_args = 1.., required = true, value_name = "TAG")]
    pub(super) tags: Vec<String>,
}

#[derive(Args, Debug)]
pub struct UntagResourceArgs {
    /// The key to untag (key ID or key ARN).
    #[arg(long)]
    pub(super) key_id: String,
    /// The tag keys to remove: one per argument, K1,K2, or a JSON list.
    #[arg(long, num_args = 1.., required = true, value_name = "TAG_KEY")]
    pub(super) tag_keys: Vec<String>,
}

#[derive(Args, Debug)]
pub struct ListResourceTagsArgs {
    /// The key whose tags to list (key ID or key ARN).
    #[arg(long)]
    pub(super) key_id: String,
    #[command(flatten)]
    pub(super) page: PageArgs,
}

#[derive(Args, Debug)]
pub struct UpdateKeyDescriptionArgs {
    /// The key to describe anew (key ID or key ARN).
    #[arg(long)]
    pub(super) key_id: String,
    /// The new description (may be empty).
    #[arg(long)]
    pub(super) description: String,
}

/// An argument's text, or the text of the file:// it names.
pub(super) fn arg_text(s: &str, what: &str) -> Result<String, Failure> {
    match s.strip_prefix("file://") {
        Some(p) => String::from_utf8(read_arg_file(p, what)?.to_vec())
            .map_err(|_| usage(format!("{what}: {p} is not UTF-8 text"))),
        None => Ok(s.to_owned()),
    }
}

/// One `--tags` argument: a JSON list of {TagKey, TagValue}, or the
/// shorthand `TagKey=K,TagValue=V`.
pub(super) fn parse_tags(arg: &str) -> Result<Vec<(String, String)>, Failure> {
    let text = arg_text(arg, "--tags")?;
    if text.trim_start().starts_with('[') {
        let list: Vec<Value> = serde_json::from_str(&text)
            .map_err(|e| usage(format!("--tags: not a JSON list of tags: {e}")))?;
        return list.iter().map(json_tag).collect();
    }
    let (mut key, mut value) = (None, None);
    for part in text.split(',') {
        match part.split_once('=') {
            Some(("TagKey", k)) => key = Some(k.to_owned()),
            Some(("TagValue", v)) => value = Some(v.to_owned()),
            _ => {
                return Err(usage(format!(
                    "--tags {text:?}: expected TagKey=KEY,TagValue=VALUE"
                )))
            }
        }
    }
    match (key, value) {
        (Some(k), Some(v)) => Ok(vec![(k, v)]),
        _ => Err(usage(format!(
            "--tags {text:?}: a tag needs both TagKey and TagValue"
        ))),
    }
}

fn json_tag(t: &Value) -> Result<(String, String), Failure> {
    match (t["TagKey"].as_str(), t["TagValue"].as_str()) {
        (Some(k), Some(v)) => Ok((k.to_owned(), v.to_owned())),
        _ => Err(usage(format!(
            "--tags: {t} is not {{\"TagKey\": ..., \"TagValue\": ...}}"
        ))),
    }
}

/// One `--tag-keys` argument: a JSON list of strings, or keys joined by commas.
pub(super) fn parse_tag_keys(arg: &str) -> Result<Vec<String>, Failure> {
    let text = arg_text(arg, "--tag-keys")?;
    if text.trim_start().starts_with('[') {
        return serde_json::from_str(&text)
            .map_err(|e| usage(format!("--tag-keys: not a JSON list of strings: {e}")));
    }
    Ok(text.split(',').map(str::to_owned).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_parse_in_the_aws_cli_forms() {
        let kv = |k: &str, v: &str| (k.to_owned(), v.to_owned());
        assert_eq!(
            parse_tags("TagKey=Purpose,TagValue=Test").unwrap(),
            [kv("Purpose", "Test")]
        );
        assert_eq!(parse_tags("TagValue=,TagKey=a=b").unwrap(), [kv("a=b", "")]);
        assert_eq!(
            parse_tags(r#"[{"TagKey":"a","TagValue":"1"},{"TagKey":"b","TagValue":""}]"#).unwrap(),
            [kv("a", "1"), kv("b", "")]
        );
        for bad in [
            "Purpose=Test",
            "TagKey=a",
            "[{\"TagKey\":\"a\"}]",
            "[",
            "TagKey=a,Other=b",
        ] {
            assert!(matches!(parse_tags(bad), Err(Failure::Usage(_))), "{bad}");
        }
        assert_eq!(parse_tag_keys("a,b").unwrap(), ["a", "b"]);
        assert_eq!(parse_tag_keys(r#"["a", "b c"]"#).unwrap(), ["a", "b c"]);
        assert!(parse_tag_keys("[1]").is_err());
    }
}
