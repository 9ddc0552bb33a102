//! Containerfile lines into instructions: parser directives at the top
//! (only `escape` changes anything), comments, blank lines and line
//! continuations (`\` or the `escape` character at the end of a line).

/// One instruction with the line it starts on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Instruction {
    /// 1-based line number of the instruction's first line.
    pub line: usize,
    /// Upper-cased keyword (`COPY`, `FROM`, ...).
    pub keyword: String,
    /// Everything after the keyword, continuations joined, trimmed.
    pub args: String,
}

impl Instruction {
    /// The instruction as written (continuations joined), for history.
    pub fn text(&self) -> String {
        if self.args.is_empty() {
            self.keyword.clone()
        } else {
            format!("{} {}", self.keyword, self.args)
        }
    }
}

/// Parse `text`; errors carry the line they are about.
pub(crate) fn parse(text: &str) -> Result<Vec<Instruction>, (usize, String)> {
    let lines: Vec<&str> = text.lines().collect();
    let mut escape = '\\';
    let mut i = 0;
    // Parser directives: `# name=value` lines before anything else.
    while i < lines.len() {
        let Some(d) = directive(lines[i]) else { break };
        if d.0 == "escape" {
            escape = match d.1.as_str() {
                "\\" => '\\',
                "`" => '`',
                other => {
                    return Err((
                        i + 1,
                        format!("escape directive {other:?} is not valid: use \\ or `"),
                    ));
                }
            };
        }
        i += 1;
    }
    let mut out = Vec::new();
    while i < lines.len() {
        let start = i;
        let first = lines[i];
        i += 1;
        let t = first.trim_start();
        if t.is_empty() || t.starts_with('#') {
            continue;
        }
        let mut joined = String::new();
        let mut cur = first;
        loop {
            let trimmed = cur.trim_end();
            match trimmed.strip_suffix(escape) {
                Some(head) => {
                    joined.push_str(head);
                    // Comment and empty lines inside a continuation are dropped.
                    while i < lines.len() {
                        let n = lines[i].trim_start();
                        if n.is_empty() || n.starts_with('#') {
                            i += 1;
                        } else {
                            break;
                        }
                    }
                    if i >= lines.len() {
                        break;
                    }
                    cur = lines[i];
                    i += 1;
                }
                None => {
                    joined.push_str(cur);
                    break;
                }
            }
        }
        let joined = joined.trim();
        let (kw, args) = match joined.find(char::is_whitespace) {
            Some(p) => (&joined[..p], joined[p..].trim()),
            None => (joined, ""),
        };
        if !kw.chars().all(|c| c.is_ascii_alphabetic()) {
            return Err((
                start + 1,
                format!("{kw:?} is not an instruction: lines start with an instruction such as FROM, COPY or ENTRYPOINT"),
            ));
        }
        out.push(Instruction {
            line: start + 1,
            keyword: kw.to_ascii_uppercase(),
            args: args.to_string(),
        });
    }
    Ok(out)
}

/// `# name=value` with a name of letters, digits, `-` and `_`.
fn directive(line: &str) -> Option<(String, String)> {
    let rest = line.trim().strip_prefix('#')?;
    let (name, value) = rest.split_once('=')?;
    let name = name.trim();
    let ok = !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    ok.then(|| (name.to_ascii_lowercase(), value.trim().to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_comments_continuations() {
        let text = "# syntax=docker/dockerfile:1\n\n# a comment\nfrom scratch\nCOPY a \\\n  # inside\n\n  b /c\nLABEL x=1\\\n";
        let ins = parse(text).unwrap();
        assert_eq!(ins.len(), 3);
        assert_eq!(
            (ins[0].line, ins[0].keyword.as_str(), ins[0].args.as_str()),
            (4, "FROM", "scratch")
        );
        assert_eq!((ins[1].line, ins[1].args.as_str()), (5, "a   b /c"));
        assert_eq!(ins[2].args, "x=1");
        let ins = parse("# escape=`\nFROM scratch\nCOPY a `\n b\n").unwrap();
        assert_eq!(ins[1].args, "a  b");
        assert_eq!(parse("FROM scratch\n!bad\n").unwrap_err().0, 2);
    }
}
