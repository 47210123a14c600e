//! A small Dockerfile reader: instructions (with continuations), stages, ARG declarations and
//! variable uses. Enough for `forge plan` to prove that every build arg the recipe passes is
//! declared and used, that the target stages exist, and that `PYTORCH_ROCM_ARCH` reaches the
//! `RUN` environment.

use std::collections::BTreeSet;

/// One instruction, continuation lines joined.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Instruction {
    /// 1-based line where it starts.
    pub line: usize,
    /// Upper-cased keyword (`RUN`, `ARG`, ...).
    pub keyword: String,
    /// Everything after the keyword.
    pub args: String,
}

/// One build stage.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Stage {
    /// `AS name`, if any.
    pub name: Option<String>,
    /// The image or stage it starts from, as written.
    pub from: String,
    /// Line of its `FROM`.
    pub line: usize,
    /// ARGs declared in it.
    pub args: Vec<String>,
    /// Variables it references (`$X`, `${X}`, `${X:-y}`).
    #[serde(skip)]
    pub uses: BTreeSet<String>,
    /// Variables it sets with ENV.
    #[serde(skip)]
    pub env: BTreeSet<String>,
}

/// A parsed Dockerfile.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Dockerfile {
    /// ARGs before the first FROM.
    pub global_args: Vec<String>,
    /// Variables used in FROM lines.
    pub from_uses: BTreeSet<String>,
    /// The stages, in order.
    pub stages: Vec<Stage>,
}

/// Split into instructions: comments and blank lines dropped, `\` continuations joined.
pub fn instructions(text: &str) -> Vec<Instruction> {
    let mut out = Vec::new();
    let mut cur: Option<(usize, String)> = None;
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim_end_matches('\r');
        let trimmed = line.trim_start();
        if trimmed.starts_with('#') && cur.as_ref().is_none_or(|(_, s)| s.is_empty()) {
            continue;
        }
        if trimmed.starts_with('#') || (trimmed.is_empty() && cur.is_some()) {
            continue; // comment or empty line inside a continuation
        }
        if trimmed.is_empty() {
            continue;
        }
        let (start, mut acc) = cur.take().unwrap_or((i + 1, String::new()));
        let cont = line.trim_end().ends_with('\\');
        let body = line.trim_end().trim_end_matches('\\');
        if !acc.is_empty() {
            acc.push(' ');
        }
        acc.push_str(body.trim());
        if cont {
            cur = Some((start, acc));
        } else {
            out.push(split(start, &acc));
        }
    }
    if let Some((start, acc)) = cur {
        out.push(split(start, &acc));
    }
    out
}

fn split(line: usize, s: &str) -> Instruction {
    let (kw, rest) = s.split_once(char::is_whitespace).unwrap_or((s, ""));
    Instruction {
        line,
        keyword: kw.to_ascii_uppercase(),
        args: rest.trim().to_owned(),
    }
}

/// Variables referenced in a string: `$X`, `${X}`, `${X:-default}`.
pub fn var_uses(s: &str) -> BTreeSet<String> {
    // Compiled once (fuzzing showed per-call compiles at 43 Dockerfiles a second).
    static RE: std::sync::OnceLock<regex::Regex> = std::sync::OnceLock::new();
    let re = RE.get_or_init(|| {
        regex::Regex::new(r"\$(?:\{([A-Za-z_][A-Za-z0-9_]*)[^}]*\}|([A-Za-z_][A-Za-z0-9_]*))")
            .expect("valid regex")
    });
    re.captures_iter(s)
        .filter_map(|c| c.get(1).or(c.get(2)).map(|m| m.as_str().to_owned()))
        .collect()
}

/// Names declared by an ARG or set by an ENV instruction's arguments.
fn declared_names(args: &str) -> Vec<String> {
    // `ARG A=1 B`, `ENV A=1 B=2`, legacy `ENV A value`
    let mut names = Vec::new();
    if !args.contains('=') {
        if let Some(first) = args.split_whitespace().next() {
            names.push(first.to_owned());
        }
        return names;
    }
    static RE: std::sync::OnceLock<regex::Regex> = std::sync::OnceLock::new();
    let re = RE.get_or_init(|| {
        regex::Regex::new(r#"(?:^|\s)([A-Za-z_][A-Za-z0-9_]*)(?:=|\s|$)"#).expect("valid")
    });
    // Only tokens at word starts that are followed by `=` or stand alone count.
    let mut rest = args;
    while let Some(c) = re.captures(rest) {
        let m = c.get(1).expect("group 1");
        names.push(m.as_str().to_owned());
        let after = &rest[m.end()..];
        rest = skip_value(after);
    }
    names
}

fn skip_value(s: &str) -> &str {
    let Some(v) = s.strip_prefix('=') else {
        return s;
    };
    // A value runs to the next unquoted whitespace.
    let mut quote = None;
    let mut escaped = false;
    for (i, ch) in v.char_indices() {
        match (quote, ch) {
            _ if escaped => escaped = false,
            (_, '\\') => escaped = true,
            (None, '"' | '\'') => quote = Some(ch),
            (Some(q), c) if c == q => quote = None,
            (None, c) if c.is_whitespace() => return &v[i..],
            _ => {}
        }
    }
    ""
}

/// Parse a Dockerfile's stages, ARGs and variable uses.
pub fn parse(text: &str) -> Dockerfile {
    let mut df = Dockerfile::default();
    for ins in instructions(text) {
        match ins.keyword.as_str() {
            "FROM" => {
                df.from_uses.extend(var_uses(&ins.args));
                let words: Vec<&str> = ins
                    .args
                    .split_whitespace()
                    .filter(|w| !w.starts_with("--"))
                    .collect();
                let name = match words.as_slice() {
                    [_, kw, name, ..] if kw.eq_ignore_ascii_case("as") => Some((*name).to_owned()),
                    _ => None,
                };
                df.stages.push(Stage {
                    name,
                    from: words.first().copied().unwrap_or("").to_owned(),
                    line: ins.line,
                    args: Vec::new(),
                    uses: BTreeSet::new(),
                    env: BTreeSet::new(),
                });
            }
            "ARG" => {
                let names = declared_names(&ins.args);
                match df.stages.last_mut() {
                    Some(s) => {
                        s.uses.extend(var_uses(&ins.args));
                        s.args.extend(names);
                    }
                    None => df.global_args.extend(names),
                }
            }
            kw => {
                if let Some(s) = df.stages.last_mut() {
                    s.uses.extend(var_uses(&ins.args));
                    if kw == "ENV" {
                        s.env.extend(declared_names(&ins.args));
                    }
                }
            }
        }
    }
    df
}

/// A compiling stage that asks the Dockerfile's `forge-jobs` helper for its job count.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct JobStage {
    /// The stage's name, as `forge-jobs` prints it.
    pub stage: String,
    /// How many compiling stages share the build's memory while it compiles (itself included).
    pub share: u64,
}

/// The `forge-jobs STAGE SHARE ...` calls of `RUN` instructions, in order, one per stage.
pub fn job_stages(text: &str) -> Vec<JobStage> {
    let re = regex::Regex::new(r"forge-jobs ([A-Za-z0-9_.-]+) ([0-9]+)\b").expect("valid regex");
    let mut out: Vec<JobStage> = Vec::new();
    for i in instructions(text).iter().filter(|i| i.keyword == "RUN") {
        for c in re.captures_iter(&i.args) {
            let stage = c[1].to_owned();
            if out.iter().all(|j| j.stage != stage) {
                out.push(JobStage {
                    stage,
                    share: c[2].parse().unwrap_or(1),
                });
            }
        }
    }
    out
}

impl Dockerfile {
    /// Names of all stages that have one.
    pub fn stage_names(&self) -> Vec<&str> {
        self.stages
            .iter()
            .filter_map(|s| s.name.as_deref())
            .collect()
    }

    /// Whether a stage of this name exists.
    pub fn has_stage(&self, name: &str) -> bool {
        self.stages.iter().any(|s| s.name.as_deref() == Some(name))
    }

    /// Whether build arg `name` is declared somewhere and used where it is declared.
    /// Returns a problem text when not.
    pub fn arg_problem(&self, name: &str) -> Option<String> {
        let global = self.global_args.iter().any(|a| a == name);
        let in_stage: Vec<&Stage> = self
            .stages
            .iter()
            .filter(|s| s.args.iter().any(|a| a == name))
            .collect();
        if !global && in_stage.is_empty() {
            return Some(format!("build arg `{name}` is not declared by any `ARG`"));
        }
        let used = (global && self.from_uses.contains(name))
            || in_stage.iter().any(|s| s.uses.contains(name));
        if !used {
            return Some(format!(
                "build arg `{name}` is declared but never used (`${name}` appears nowhere it is in scope)"
            ));
        }
        None
    }

    /// Stages that declare `name` as ARG but do not export it with ENV: their RUN steps see it,
    /// but a build tool that reads the variable from its own environment later (a child of
    /// `setup.py`) may not, which is what breaks `PYTORCH_ROCM_ARCH` (field notes).
    pub fn stages_without_env(&self, name: &str) -> Vec<&Stage> {
        self.stages
            .iter()
            .filter(|s| s.args.iter().any(|a| a == name) && !s.env.contains(name))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn job_stages_of_the_shipped_dockerfile() {
        let text = crate::recipe::SHIPPED_DOCKERFILES[0].1;
        let got: Vec<(String, u64)> = job_stages(text)
            .into_iter()
            .map(|j| (j.stage, j.share))
            .collect();
        let want = [
            ("build-torch", 1),
            ("build-triton", 3),
            ("build-vision", 3),
            ("build-audio", 3),
            ("vllm-build", 1),
        ];
        assert_eq!(
            got,
            want.map(|(s, n)| (s.to_owned(), n)).to_vec(),
            "every compiling stage asks forge-jobs"
        );
        // the helper's own text and comments are no call
        assert!(
            job_stages("# forge-jobs STAGE 3\nRUN printf 'forge-jobs: x MAX_JOBS=1'\n").is_empty()
        );
    }

    const DF: &str = "# syntax=docker/dockerfile:1\nARG BASE=debian\nFROM ${BASE} AS base\n\
ARG X=1 Y\nENV X=${X} \\\n    Z=\"a b\"\nRUN echo $Y\nFROM base AS two\nARG UNUSED\nRUN true\n";

    #[test]
    fn stages_args_and_uses() {
        let df = parse(DF);
        assert_eq!(df.global_args, ["BASE"]);
        assert_eq!(df.stage_names(), ["base", "two"]);
        assert_eq!(df.stages[0].args, ["X", "Y"]);
        assert!(df.stages[0].env.contains("Z"));
        assert!(df.stages[0].env.contains("X"));
        assert_eq!(df.stages[1].line, 8);
        assert!(df.arg_problem("BASE").is_none());
        assert!(df.arg_problem("X").is_none());
        assert!(df.arg_problem("Y").is_none());
        assert!(df.arg_problem("UNUSED").unwrap().contains("never used"));
        assert!(df.arg_problem("NOPE").unwrap().contains("not declared"));
        assert_eq!(df.stages_without_env("Y").len(), 1);
        assert!(df.stages_without_env("X").is_empty());
    }

    #[test]
    fn continuation_with_comment_inside() {
        let ins = instructions("RUN a \\\n# note\n  && b\nCOPY x y\n");
        assert_eq!(ins.len(), 2);
        assert_eq!(ins[0].args, "a && b");
        assert_eq!(ins[1].line, 4);
    }

    #[test]
    fn shipped_dockerfile_declares_and_uses_every_recipe_arg() {
        let r = crate::recipe::Recipe::shipped("7.1.1", Default::default()).unwrap();
        let df = parse(&r.dockerfile.read().unwrap());
        for name in r.build_args.keys() {
            assert_eq!(df.arg_problem(name), None, "{name}");
        }
        assert!(df.has_stage("runtime") && df.has_stage("wheels"));
        assert!(df.stages_without_env("PYTORCH_ROCM_ARCH").is_empty());
    }
}
