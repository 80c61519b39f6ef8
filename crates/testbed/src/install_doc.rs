//! The shell blocks of docs/install.md and their markers (the convention is at the end of
//! that page): every `sh`/`bash`/`shell`/`console` block is preceded by
//! `<!-- deploy: run on=all|master|nodes -->` or `<!-- deploy: skip reason="..." -->`.
//! [`blocks`] reads them all and refuses an unmarked shell block, a fence without a language,
//! a skip without a reason and an unknown marker; the deploy test runs the `run` blocks.

use std::fmt;

/// Where a `run` block runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum On {
    /// Every node.
    All,
    /// The first node (the master).
    Master,
    /// Every node but the master (the joining ones).
    Nodes,
}

/// What the deploy test does with a block.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Marker {
    Run(On),
    Skip { reason: String },
}

/// One shell block of the page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Block {
    /// 1-based line of the opening fence.
    pub line: usize,
    pub marker: Marker,
    pub script: String,
}

/// What is wrong with the page, with the line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DocError {
    pub line: usize,
    pub message: String,
}

impl fmt::Display for DocError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}: {}", self.line, self.message)
    }
}

const SHELLS: [&str; 4] = ["sh", "bash", "shell", "console"];

fn parse_marker(text: &str, line: usize) -> Result<Marker, DocError> {
    let err = |m: String| DocError { line, message: m };
    let body = text.trim();
    if let Some(rest) = body.strip_prefix("run") {
        let on = match rest.trim() {
            "" | "on=all" => On::All,
            "on=master" => On::Master,
            "on=nodes" => On::Nodes,
            other => return Err(err(format!("unknown run target '{other}'"))),
        };
        return Ok(Marker::Run(on));
    }
    if let Some(rest) = body.strip_prefix("skip") {
        let reason = rest
            .trim()
            .strip_prefix("reason=\"")
            .and_then(|r| r.strip_suffix('"'))
            .map(str::trim)
            .unwrap_or("");
        if reason.is_empty() {
            return Err(err("a skip marker needs reason=\"...\"".to_string()));
        }
        return Ok(Marker::Skip {
            reason: reason.to_string(),
        });
    }
    Err(err(format!("unknown marker '{body}'")))
}

/// Every shell block of `text`, or every problem found.
pub fn blocks(text: &str) -> Result<Vec<Block>, Vec<DocError>> {
    let mut out = Vec::new();
    let mut errors = Vec::new();
    // The last marker seen and whether only blank lines followed it.
    let mut pending: Option<(usize, Result<Marker, DocError>)> = None;
    let mut lines = text.lines().enumerate();
    while let Some((i, line)) = lines.next() {
        let n = i + 1;
        let t = line.trim();
        if let Some(m) = t
            .strip_prefix("<!-- deploy:")
            .and_then(|r| r.strip_suffix("-->"))
        {
            if let Some((at, _)) = &pending {
                errors.push(DocError {
                    line: *at,
                    message: "marker not followed by a shell block".into(),
                });
            }
            pending = Some((n, parse_marker(m, n)));
            continue;
        }
        if t.is_empty() {
            continue;
        }
        let Some(lang) = t.strip_prefix("```") else {
            if let Some((at, _)) = pending.take() {
                errors.push(DocError {
                    line: at,
                    message: "marker not followed by a shell block".into(),
                });
            }
            continue;
        };
        let lang = lang.trim().to_string();
        let mut script = String::new();
        let mut closed = false;
        for (_, l) in lines.by_ref() {
            if l.trim() == "```" {
                closed = true;
                break;
            }
            script.push_str(l);
            script.push('\n');
        }
        if !closed {
            errors.push(DocError {
                line: n,
                message: "code block never closed".into(),
            });
        }
        let marker = pending.take();
        if lang.is_empty() {
            errors.push(DocError {
                line: n,
                message: "code block without a language (sh, text, toml, ...)".into(),
            });
            continue;
        }
        if !SHELLS.contains(&lang.as_str()) {
            if let Some((at, _)) = marker {
                errors.push(DocError {
                    line: at,
                    message: format!("marker on a '{lang}' block, not a shell block"),
                });
            }
            continue;
        }
        match marker {
            None => errors.push(DocError {
                line: n,
                message: "shell block without a <!-- deploy: run|skip --> marker".into(),
            }),
            Some((_, Err(e))) => errors.push(e),
            Some((_, Ok(marker))) => out.push(Block {
                line: n,
                marker,
                script,
            }),
        }
    }
    if let Some((at, _)) = pending {
        errors.push(DocError {
            line: at,
            message: "marker not followed by a shell block".into(),
        });
    }
    if errors.is_empty() {
        Ok(out)
    } else {
        Err(errors)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn marked_blocks_are_read_with_their_target_or_reason() {
        let doc = "# T\n\n<!-- deploy: run on=master -->\n\n```sh\necho hi\n```\n\n\
                   ```toml\nx = 1\n```\n<!-- deploy: skip reason=\"needs a disk\" -->\n\
                   ```bash\nmkfs /dev/sdb\n```\n";
        let b = blocks(doc).unwrap();
        assert_eq!(b.len(), 2);
        assert_eq!(b[0].marker, Marker::Run(On::Master));
        assert_eq!(b[0].script, "echo hi\n");
        assert_eq!(b[0].line, 5);
        assert_eq!(
            b[1].marker,
            Marker::Skip {
                reason: "needs a disk".into()
            }
        );
    }

    #[test]
    fn unmarked_or_badly_marked_blocks_fail() {
        for (doc, needle) in [
            ("```sh\nls\n```\n", "without a <!-- deploy"),
            ("```\nls\n```\n", "without a language"),
            ("<!-- deploy: skip -->\n```sh\nls\n```\n", "needs reason"),
            (
                "<!-- deploy: skip reason=\"\" -->\n```sh\nls\n```\n",
                "needs reason",
            ),
            (
                "<!-- deploy: run on=moon -->\n```sh\nls\n```\n",
                "unknown run target",
            ),
            ("<!-- deploy: maybe -->\n```sh\nls\n```\n", "unknown marker"),
            (
                "<!-- deploy: run -->\ntext\n```sh\nls\n```\n",
                "not followed",
            ),
            (
                "<!-- deploy: run -->\n```text\nls\n```\n",
                "not a shell block",
            ),
            ("<!-- deploy: run -->\n```sh\nls\n", "never closed"),
        ] {
            let errs = blocks(doc).unwrap_err();
            assert!(
                errs.iter().any(|e| e.message.contains(needle)),
                "{doc:?}: {errs:?}"
            );
        }
    }
}
