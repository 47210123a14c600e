use super::*;
use crate::error::Error;

fn problems(text: &str) -> Vec<crate::error::RecipeProblem> {
    match Recipe::parse(
        text,
        Origin::Shipped { file: "t.toml" },
        LoadOptions::default(),
    ) {
        Err(Error::Recipe { problems, .. }) => problems,
        Err(e) => panic!("unexpected error {e}"),
        Ok(_) => Vec::new(),
    }
}

fn base() -> String {
    SHIPPED[0].2.to_owned()
}

#[test]
fn shipped_recipes_parse() {
    let r = Recipe::shipped("7.1.1", LoadOptions::default()).unwrap();
    assert_eq!(r.archs(), ["gfx1151"]);
    assert_eq!(r.build_args["USE_DISTRIBUTED"], "1");
    assert_eq!(r.build_args["PYTORCH_ROCM_ARCH"], "gfx1151");
    assert_eq!(r.build_args["ROCM_VERSION"], "7.1.1");
    assert_eq!(r.jobs(), Jobs::Auto { per_job_gb: 8 });
    Recipe::shipped("7.0.2", LoadOptions::default()).unwrap();
    Recipe::shipped("rocm-7.0.2", LoadOptions::default()).unwrap();
    let opts = LoadOptions {
        allow_unsupported: true,
    };
    assert_eq!(Recipe::shipped("6.2.4", opts).unwrap().rocm, [6, 2, 4]);
}

#[test]
fn rocm_624_for_gfx1151_is_refused_with_reason() {
    let e = Recipe::shipped("6.2.4", LoadOptions::default()).unwrap_err();
    let msg = e.to_string();
    assert!(
        msg.contains("ROCm 6.2.4 is not supported for gfx1151"),
        "{msg}"
    );
    assert!(msg.contains("7.0.2"), "{msg}");
    assert!(msg.contains("--allow-unsupported"), "{msg}");
    assert!(msg.contains("recipes/rocm-6.2.4.toml:"), "{msg}");
}

#[test]
fn unknown_shipped_version_lists_known() {
    let e = Recipe::shipped("5.7", LoadOptions::default()).unwrap_err();
    assert!(e.hint().unwrap().contains("7.1.1"));
}

#[test]
fn typo_key_is_refused_with_line_and_suggestion() {
    let text = base().replace("base-image =", "base-imgae =");
    let p = problems(&text);
    assert_eq!(p.len(), 1);
    let want_line = text
        .lines()
        .position(|l| l.starts_with("base-imgae"))
        .unwrap()
        + 1;
    assert_eq!(p[0].line, Some(want_line));
    assert!(
        p[0].message.contains("unknown field `base-imgae`"),
        "{}",
        p[0].message
    );
    assert_eq!(p[0].hint.as_deref(), Some("did you mean `base-image`?"));
}

#[test]
fn typo_in_nested_table_is_refused() {
    let text = base().replace("wheel-min-bytes", "wheel-min-byte");
    let p = problems(&text);
    assert_eq!(
        p[0].hint.as_deref(),
        Some("did you mean `wheel-min-bytes`?")
    );
}

#[test]
fn distributed_off_is_an_error_at_its_line() {
    for v in ["\"0\"", "0", "\"OFF\"", "false", "\"FALSE\""] {
        let text = base().replace("USE_DISTRIBUTED = \"1\"", &format!("USE_DISTRIBUTED = {v}"));
        let p = problems(&text);
        let want_line = text
            .lines()
            .position(|l| l.starts_with("USE_DISTRIBUTED"))
            .unwrap()
            + 1;
        assert_eq!(p.len(), 1, "{v}: {p:?}");
        assert_eq!(p[0].line, Some(want_line));
        assert!(p[0].message.contains("PrefixStore"));
    }
}

#[test]
fn missing_flags_are_set_by_forge() {
    let text = base()
        .replace("USE_DISTRIBUTED = \"1\"\n", "")
        .replace("USE_ROCM = \"1\"\n", "");
    let r = Recipe::parse(&text, Origin::Shipped { file: "t" }, LoadOptions::default()).unwrap();
    assert_eq!(r.build_args["USE_DISTRIBUTED"], "1");
    assert_eq!(r.build_args["USE_ROCM"], "1");
    assert_eq!(r.build_args["USE_CUDA"], "0");
    // no pin: forge-jobs decides in the build; the per-job budget comes from [preflight]
    assert_eq!(r.build_args["MAX_JOBS"], "auto");
    assert_eq!(r.build_args["JOB_MEMORY_GB"], "8");
}

#[test]
fn contradictions_are_errors() {
    let arch = base().replace(
        "USE_ROCM = \"1\"",
        "USE_ROCM = \"1\"\nPYTORCH_ROCM_ARCH = \"gfx1100\"",
    );
    assert!(problems(&arch)[0].message.contains("contradicts"));
    let same = base().replace(
        "USE_ROCM = \"1\"",
        "USE_ROCM = \"1\"\nPYTORCH_ROCM_ARCH = \"gfx1151\"",
    );
    assert!(problems(&same).is_empty());
    let empty = base().replace("archs = [\"gfx1151\"]", "archs = []");
    assert!(
        problems(&empty)
            .iter()
            .any(|p| p.message.contains("arch list is empty"))
    );
    let bad = base().replace("archs = [\"gfx1151\"]", "archs = [\"gfx1151\", \"rx7900\"]");
    assert!(
        problems(&bad)
            .iter()
            .any(|p| p.message.contains("`rx7900` is not a GPU arch"))
    );
    let cuda = base().replace("USE_ROCM = \"1\"", "USE_ROCM = \"1\"\nUSE_CUDA = \"ON\"");
    assert!(problems(&cuda)[0].message.contains("USE_CUDA"));
    let rocm = base().replace("USE_ROCM = \"1\"", "USE_ROCM = \"0\"");
    assert!(problems(&rocm)[0].message.contains("CPU-only"));
    let jobs = base().replace("USE_ROCM = \"1\"", "USE_ROCM = \"1\"\nMAX_JOBS = \"0\"");
    assert!(problems(&jobs)[0].message.contains("MAX_JOBS"));
    let auto = base().replace("USE_ROCM = \"1\"", "USE_ROCM = \"1\"\nMAX_JOBS = \"auto\"");
    assert!(problems(&auto).is_empty());
    let budget = base().replace(
        "USE_ROCM = \"1\"",
        "USE_ROCM = \"1\"\nJOB_MEMORY_GB = \"2\"",
    );
    assert!(
        problems(&budget)[0]
            .hint
            .as_deref()
            .unwrap()
            .contains("min-memory-per-job-gb")
    );
    let field = base().replace("USE_ROCM = \"1\"", "USE_ROCM = \"1\"\nBASE_IMAGE = \"x\"");
    assert!(
        problems(&field)[0]
            .hint
            .as_deref()
            .unwrap()
            .contains("base-image")
    );
}

#[test]
fn several_problems_are_all_reported_in_line_order() {
    let text = base()
        .replace("USE_DISTRIBUTED = \"1\"", "USE_DISTRIBUTED = \"0\"")
        .replace("archs = [\"gfx1151\"]", "archs = []");
    let p = problems(&text);
    assert_eq!(p.len(), 2, "{p:?}");
    assert!(p[0].line < p[1].line);
}

#[test]
fn schema_must_be_1_and_required_keys_present() {
    let p = problems(&base().replace("schema = 1", "schema = 2"));
    assert!(p[0].message.contains("schema 2 is not supported"));
    let p = problems(&base().replace("schema = 1\n", ""));
    assert!(p[0].message.contains("missing field `schema`"), "{p:?}");
}

#[test]
fn flag_values_normalise() {
    for on in ["ON", "1", "TRUE", "true", "Yes", "y"] {
        assert_eq!(parse_flag(on), Some(true), "{on}");
    }
    for off in ["OFF", "0", "FALSE", "no", "", "  ", "Foo-NOTFOUND"] {
        assert_eq!(parse_flag(off), Some(false), "{off:?}");
    }
    assert_eq!(parse_flag("maybe"), None);
}

#[test]
fn versions_compare() {
    assert!(version_lt(&[6, 2, 4], &MIN_ROCM_FOR_APU));
    assert!(version_lt(&[7, 0], &MIN_ROCM_FOR_APU));
    assert!(!version_lt(&[7, 0, 2], &MIN_ROCM_FOR_APU));
    assert!(!version_lt(&[7, 1], &MIN_ROCM_FOR_APU));
    assert_eq!(parse_version("7.1.1"), Some(vec![7, 1, 1]));
    assert_eq!(parse_version("7.x"), None);
}

#[test]
fn file_recipe_resolves_dockerfile_relative_to_itself() {
    let tmp = tempfile::Builder::new()
        .prefix("forge-recipe-")
        .tempdir()
        .unwrap();
    let dir = tmp.path();
    let text = base().replace("../dockerfiles/vllm-rocm.Dockerfile", "missing.Dockerfile");
    std::fs::write(dir.join("r.toml"), &text).unwrap();
    let e = Recipe::from_path(&dir.join("r.toml"), LoadOptions::default()).unwrap_err();
    assert!(
        e.to_string().contains("missing.Dockerfile` does not exist"),
        "{e}"
    );
    let text = base().replace(
        "../dockerfiles/vllm-rocm.Dockerfile",
        "forge:vllm-rocm.Dockerfile",
    );
    std::fs::write(dir.join("r.toml"), &text).unwrap();
    let r = Recipe::from_path(&dir.join("r.toml"), LoadOptions::default()).unwrap();
    assert!(matches!(r.dockerfile, DockerfileRef::Embedded { .. }));
}

#[test]
fn runtime_and_server_keys_are_checked() {
    let text = format!(
        "{}\n[checks.runtime]\nextra-imports = [\"uvloop\", \"os; import shutil\"]\ntimeout-secs = 0\n",
        base()
    )
    .replace("port = 8000", "port = 8000\nargs = [\"--enforce-eager\"]")
    .replace(
        "mounts = [\"~/.cache/forge/triton:/root/.triton/cache\"]",
        "mounts = [\"models\", \"~/hf:/root/.cache/huggingface:ro\"]",
    );
    let p = problems(&text);
    let msgs: Vec<&str> = p.iter().map(|p| p.message.as_str()).collect();
    assert!(
        msgs.iter()
            .any(|m| m.contains("`os; import shutil` is not a Python module name")),
        "{msgs:?}"
    );
    assert!(
        msgs.iter().any(|m| m.contains("timeout-secs = 0")),
        "{msgs:?}"
    );
    assert!(
        msgs.iter()
            .any(|m| m.contains("`models` is not `host:container[:ro]`")),
        "{msgs:?}"
    );
    assert_eq!(p.len(), 3, "{msgs:?}");
    let r = Recipe::shipped("7.1.1", LoadOptions::default()).unwrap();
    assert_eq!(
        r.file.checks.server.args,
        ["--gpu-memory-utilization", "0.3", "--enforce-eager"]
    );
    assert_eq!(r.file.checks.server.ready_pattern, "Uvicorn running");
}

/// The shipped prebuilt recipe, with a made-up hash for every taken wheel (the shipped file has
/// none: nothing was downloaded here).
fn prebuilt_with_hashes() -> String {
    let text = std::fs::read_to_string("recipes/therock-gfx1151-prebuilt.toml").unwrap();
    let mut out = String::new();
    for (i, line) in text.lines().enumerate() {
        out.push_str(line);
        out.push('\n');
        if line.starts_with("wheel = ") {
            out.push_str(&format!("sha256 = \"{:064x}\"\n", i + 1));
        }
    }
    out
}

fn prebuilt(text: &str) -> Result<Recipe> {
    Recipe::parse(
        text,
        Origin::File(PathBuf::from("recipes/therock-gfx1151-prebuilt.toml")),
        LoadOptions::default(),
    )
}

fn prebuilt_problems(text: &str) -> Vec<crate::error::RecipeProblem> {
    match prebuilt(text) {
        Err(Error::Recipe { problems, .. }) => problems,
        Err(e) => panic!("unexpected error {e}"),
        Ok(_) => Vec::new(),
    }
}

#[test]
fn the_shipped_prebuilt_recipe_is_refused_only_for_its_missing_hashes() {
    let text = std::fs::read_to_string("recipes/therock-gfx1151-prebuilt.toml").unwrap();
    let p = prebuilt_problems(&text);
    assert_eq!(p.len(), 8, "{p:?}");
    for prob in &p {
        assert!(prob.message.contains("has no `sha256`"), "{prob:?}");
        assert!(
            prob.hint.as_deref().unwrap().contains("sha256sum"),
            "{prob:?}"
        );
        assert!(prob.line.is_some());
    }
    assert!(p.iter().any(|x| x.message.starts_with("`[taken.torch]`")));
}

#[test]
fn a_taken_torch_is_installed_by_hash_and_builds_no_torch() {
    let r = prebuilt(&prebuilt_with_hashes()).unwrap();
    assert_eq!(r.taken.len(), 8);
    let torch = r.taken_torch().unwrap();
    assert_eq!(torch.version, "2.9.1+rocm7.13.0a20260315");
    assert!(torch.path.ends_with(
        "wheelhouse/therock-gfx1151/torch-2.9.1+rocm7.13.0a20260315-cp312-cp312-linux_x86_64.whl"
    ));
    let pairs: Vec<&str> = r.build_args["TAKEN_WHEELS"].split(' ').collect();
    assert_eq!(pairs.len(), 8);
    assert!(
        pairs
            .iter()
            .all(|p| p.split_once('=').unwrap().1.len() == 64)
    );
    assert_eq!(r.build_args["WHEELHOUSE"], ".");
    for gone in [
        "PYTORCH_REPO",
        "PYTORCH_REF",
        "USE_DISTRIBUTED",
        "USE_ROCM",
        "USE_CUDA",
    ] {
        assert!(
            !r.build_args.contains_key(gone),
            "{gone} set for a taken torch"
        );
    }
    assert!(
        r.torch_source()
            .starts_with("taken: torch 2.9.1+rocm7.13.0a20260315")
    );
    // the plan: vLLM built, torch and the ROCm wheels taken; every replaced expectation named
    let (plan, checks) =
        crate::ops::plan::resolve(&r, std::path::Path::new("artifacts"), "<run>").unwrap();
    assert!(
        checks
            .iter()
            .all(|c| c.status == crate::report::Status::Pass),
        "the prebuilt Dockerfile declares and uses every arg: {checks:?}"
    );
    let how = |n: &str| {
        plan.components
            .iter()
            .find(|c| c.name == n)
            .map(|c| c.how.as_str())
    };
    assert_eq!(how("vllm"), Some("built"));
    assert_eq!(how("torch"), Some("taken"));
    assert_eq!(how("rocm-sdk-core"), Some("taken"));
    assert_eq!(how("rocm-sdk-devel"), Some("taken"));
    assert_eq!(how("rocm"), Some("taken"));
    assert_eq!(plan.components.len(), 9, "{:?}", plan.components);
    let keys: Vec<&str> = plan.replaced.iter().map(|x| x.key.as_str()).collect();
    assert_eq!(keys, SPEC_EXPECTATIONS);
    let text = plan.render_text();
    assert!(
        text.contains("  vllm           built  https://github.com/vllm-project/vllm.git@v0.12.0"),
        "{text}"
    );
    assert!(text.contains("  torch          taken  "), "{text}");
    assert!(text.contains("replaced    checks.system-packages: the spec's rocm-smi-lib, amd-smi-lib -> (none): no system ROCm"), "{text}");
    let cond = |id: &str| {
        plan.planned_checks
            .iter()
            .find(|c| c.id == id)
            .unwrap()
            .pass_condition
            .clone()
    };
    assert!(cond("3.1").starts_with("> 0.5 GB (the recipe's; the spec's is 2.0 GB: a torch wheel that keeps ROCm in separate wheels"), "{}", cond("3.1"));
    assert!(
        cond("4.2").contains("replaces the spec's rocm-smi-lib, amd-smi-lib"),
        "{}",
        cond("4.2")
    );
    assert!(cond("wheel.taken").contains("before anything is built"));
}

#[test]
fn the_default_recipe_builds_everything_and_replaces_nothing() {
    let r = Recipe::shipped("7.1.1", LoadOptions::default()).unwrap();
    assert!(r.taken.is_empty());
    assert!(!r.build_args.contains_key("TAKEN_WHEELS"));
    let (plan, _) =
        crate::ops::plan::resolve(&r, std::path::Path::new("artifacts"), "<run>").unwrap();
    assert!(plan.components.iter().all(|c| c.how == "built"));
    assert_eq!(plan.components.len(), 5);
    assert!(plan.replaced.is_empty());
    assert!(!plan.planned_checks.iter().any(|c| c.id == "wheel.taken"));
    assert_eq!(
        plan.planned_checks
            .iter()
            .find(|c| c.id == "3.1")
            .unwrap()
            .pass_condition,
        "> 2.0 GB"
    );
}

#[test]
fn taken_components_are_refused_when_unpinned_doubled_or_misnamed() {
    let good = prebuilt_with_hashes();
    let one = |text: &str, want: &str| {
        let p = prebuilt_problems(text);
        assert!(
            p.iter().any(|x| x.message.contains(want)),
            "want `{want}` in {p:?}"
        );
    };
    // built and taken at once
    one(
        &good.replace("[vllm]", "[pytorch]\nrepo = \"r\"\nref = \"v\"\n\n[vllm]"),
        "torch is both built (`[pytorch]`) and taken (`[taken.torch]`)",
    );
    // vLLM is what forge compiles
    one(
        &good.replace("[taken.triton]", "[taken.vllm]\nversion = \"0.12.0\"\nwheel = \"vllm-0.12.0-cp312-cp312-linux_x86_64.whl\"\nsha256 = \"00\"\n\n[taken.triton]"),
        "vLLM is the component forge compiles",
    );
    // a hash that is no hash
    one(
        &good.replacen("sha256 = \"", "sha256 = \"zz", 1),
        "is not 64 hex digits",
    );
    // the wheel's file name says another version
    one(
        &good.replace(
            "version = \"2.9.1+rocm7.13.0a20260315\"",
            "version = \"2.9.0\"",
        ),
        "is torch 2.9.1+rocm7.13.0a20260315, not torch 2.9.0",
    );
    // torch's build flags mean nothing for a taken torch
    one(
        &good.replace("[build-args]", "[build-args]\nUSE_DISTRIBUTED = \"1\""),
        "`USE_DISTRIBUTED` is a flag of torch's build",
    );
    // a replaced spec expectation needs its reason
    let no_reason: String = good
        .lines()
        .filter(|l| !l.starts_with("system-packages = \"no system"))
        .map(|l| format!("{l}\n"))
        .collect();
    one(
        &no_reason,
        "`checks.system-packages` replaces the spec's expectation (rocm-smi-lib, amd-smi-lib) without a reason",
    );
    // an unknown reason key
    one(
        &good.replace("[checks.reasons]", "[checks.reasons]\nwheel-size = \"x\""),
        "`checks.reasons.wheel-size`",
    );
    // no context, no wheelhouse to copy from
    one(
        &good.replace("context = \"../wheelhouse/therock-gfx1151\"\n", ""),
        "taken wheels need a build context",
    );
    // the wheelhouse outside the context
    one(
        &good.replace(
            "wheelhouse = \"../wheelhouse/therock-gfx1151\"",
            "wheelhouse = \"/tmp\"",
        ),
        "is not inside the build context",
    );
    // neither built nor taken
    let no_torch: String = good.replace("[taken.torch]", "[taken.torch-x]");
    let p = prebuilt_problems(&no_torch);
    assert!(
        p.iter()
            .any(|x| x.message.contains("no `[pytorch]` and no `[taken.torch]`")),
        "{p:?}"
    );
}

#[test]
fn the_lock_table_is_validated_and_the_shipped_lock_embedded() {
    let r = Recipe::shipped("7.1.1", LoadOptions::default()).unwrap();
    let lock = r.lock.as_ref().expect("the 7.1.1 recipe has a lock");
    assert!(lock.read().unwrap().contains("fastsafetensors==0.3.2"));
    assert_eq!(
        r.file.lock.as_ref().unwrap().from_index["fastsafetensors"].version,
        "0.3.2"
    );
    // every problem at once, on the `[lock]` line: no reason, a bad version, a bad `add`
    let text = base().replace(
        "reason = \"first release",
        "reason = \"\"\nignored = \"first release",
    );
    let p = problems(&text);
    assert!(
        p.iter().any(|p| p.message.contains("ignored")),
        "an unknown key is refused: {p:?}"
    );
    let text = base()
        .replace("reason = \"first release", "reason = \" \"\n# \"")
        .replace("version = \"0.3.2\"", "version = \"not-a-version\"")
        .replace("add = [\"sympy>=1.13.3\"", "add = [\"sympy>=>1\"");
    let p = problems(&text);
    let all: Vec<&str> = p.iter().map(|p| p.message.as_str()).collect();
    assert!(all.iter().any(|m| m.contains("gives no reason")), "{all:?}");
    assert!(
        all.iter().any(|m| m.contains("is not a version")),
        "{all:?}"
    );
    assert!(all.iter().any(|m| m.contains("not a PEP 508")), "{all:?}");
    let line = text.lines().position(|l| l == "[lock]").unwrap() + 1;
    assert!(p.iter().all(|p| p.line == Some(line)), "{p:?}");
    // a shipped recipe's lock must be embedded
    let text = base().replace(
        "file = \"rocm-7.1.1.lock.txt\"",
        "file = \"other.lock.txt\"",
    );
    let p = problems(&text);
    assert!(p[0].message.contains("no shipped lock named"), "{p:?}");
}

#[test]
fn a_taken_torch_needs_the_devel_wheel_and_takes_the_rocm_sdist() {
    let good = prebuilt_with_hashes();
    let r = prebuilt(&good).unwrap();
    let sdist = r.taken.iter().find(|t| t.name == "rocm").unwrap();
    assert!(sdist.path.ends_with("rocm-7.13.0a20260315.tar.gz"));
    assert!(
        r.build_args["TAKEN_WHEELS"].contains("rocm-7.13.0a20260315.tar.gz="),
        "{}",
        r.build_args["TAKEN_WHEELS"]
    );
    // without the devel wheel vLLM has no compiler: refused, with what to take
    let no_devel = good.replace("[taken.rocm-sdk-devel]", "[taken.rocm-sdk-devel-x]");
    let p = prebuilt_problems(&no_devel);
    let hit = p
        .iter()
        .find(|x| x.message.contains("without `[taken.rocm-sdk-devel]`"))
        .unwrap_or_else(|| panic!("{p:?}"));
    assert!(
        hit.hint.as_deref().unwrap().contains("rocm-sdk init"),
        "{hit:?}"
    );
    // an sdist whose name is not the table's
    let wrong = good.replace(
        "wheel = \"rocm-7.13.0a20260315.tar.gz\"",
        "wheel = \"rocm-7.12.0.tar.gz\"",
    );
    let p = prebuilt_problems(&wrong);
    assert!(
        p.iter().any(|x| x
            .message
            .contains("is rocm 7.12.0, not rocm 7.13.0a20260315")),
        "{p:?}"
    );
    let not_a_file = good.replace(
        "wheel = \"rocm-7.13.0a20260315.tar.gz\"",
        "wheel = \"rocm.zip\"",
    );
    let p = prebuilt_problems(&not_a_file);
    assert!(
        p.iter()
            .any(|x| x.message.contains("is not a wheel or sdist file name")),
        "{p:?}"
    );
}
