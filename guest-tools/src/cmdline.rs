//! Kernel command-line parsing.
//!
//! Init does not get dotted parameters such as `vgpu.scenario=` in its environment (the kernel
//! treats them as module parameters), so guest programs read `/proc/cmdline` instead.

/// Splits a kernel command line into words, honouring double quotes as the kernel does.
pub fn words(cmdline: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut in_quotes = false;
    let mut has_word = false;
    for c in cmdline.chars() {
        match c {
            '"' => {
                in_quotes = !in_quotes;
                has_word = true;
            }
            c if c.is_whitespace() && !in_quotes => {
                if has_word {
                    out.push(std::mem::take(&mut cur));
                    has_word = false;
                }
            }
            c => {
                cur.push(c);
                has_word = true;
            }
        }
    }
    if has_word {
        out.push(cur);
    }
    out
}

/// Value of the last `key=value` word for `key` (the kernel's rule: the last one wins).
pub fn param(cmdline: &str, key: &str) -> Option<String> {
    words(cmdline)
        .into_iter()
        .filter_map(|w| {
            let (k, v) = w.split_once('=')?;
            (k == key).then(|| v.to_string())
        })
        .next_back()
}

/// Reads `/proc/cmdline` (empty when it cannot be read).
pub fn read_proc() -> String {
    std::fs::read_to_string("/proc/cmdline").unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_last_value_of_a_dotted_key() {
        let c = "console=ttyS0 vgpu.scenario=probe quiet vgpu.scenario=other\n";
        assert_eq!(param(c, "vgpu.scenario").as_deref(), Some("other"));
        assert_eq!(param(c, "console").as_deref(), Some("ttyS0"));
        assert_eq!(param(c, "quiet"), None);
        assert_eq!(param(c, "vgpu"), None);
    }

    #[test]
    fn quoted_values_keep_spaces() {
        let c = r#"a=1 vgpu.args="x y  z" b"#;
        assert_eq!(words(c), vec!["a=1", "vgpu.args=x y  z", "b"]);
        assert_eq!(param(c, "vgpu.args").as_deref(), Some("x y  z"));
    }
}
