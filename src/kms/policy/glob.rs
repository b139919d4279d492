//! IAM's wildcards: `*` any run of characters, `?` any one character.

/// Whether `text` matches `pattern`; `fold` compares ASCII letters without case.
pub fn glob_match(pattern: &str, text: &str, fold: bool) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let t: Vec<char> = text.chars().collect();
    let same = |a: char, b: char| {
        if fold {
            a.eq_ignore_ascii_case(&b)
        } else {
            a == b
        }
    };
    // Greedy match with backtracking to the last star: linear in practice.
    let (mut pi, mut ti) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        if pi < p.len() && (p[pi] == '?' || (p[pi] != '*' && same(p[pi], t[ti]))) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some((pi, ti));
            pi += 1;
        } else if let Some((sp, st)) = star {
            pi = sp + 1;
            ti = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|c| *c == '*')
}

#[cfg(test)]
mod tests {
    use super::glob_match;

    #[test]
    fn wildcards() {
        assert!(glob_match(
            "GenerateDataKey*",
            "GenerateDataKeyWithoutPlaintext",
            true
        ));
        assert!(glob_match("generatedatakey*", "GenerateDataKey", true));
        assert!(!glob_match("GenerateDataKey*", "Decrypt", true));
        assert!(glob_match("*", "", false));
        assert!(glob_match("a?c", "abc", false));
        assert!(!glob_match("a?c", "ac", false));
        assert!(glob_match(
            "*Key*Pair*",
            "GenerateDataKeyPairWithoutPlaintext",
            true
        ));
        assert!(!glob_match("Vol", "vol", false));
        assert!(glob_match("Vol", "vol", true));
        assert!(glob_match("a*b*c", "aXbYbZc", false));
        assert!(!glob_match("a*b*c", "aXbYbZ", false));
    }
}
