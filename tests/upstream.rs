//! `forge recipe from-vllm` on the real sdists of vLLM releases with different pins, fetched by
//! `scripts/fetch-vllm-sdist.sh` (pinned URL and SHA256) into `$FORGE_SDIST_DIR` or
//! `~/.cache/forge/sdists`. A test without its sdist skips with the reason, and fails under `CI`.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use tempfile::TempDir;

use forge::recipe::{LoadOptions, Recipe};

mod common;
use common::{SKIPS_ENV, json, stderr};

fn forge(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_forge"))
        .args(args)
        .output()
        .expect("forge runs")
}

/// A fresh `forge-upstream-{name}-XXXXXX` temp dir, removed when dropped (also when the test panics).
fn tempdir(name: &str) -> TempDir {
    common::tempdir(&format!("upstream-{name}"))
}

/// The sdist of vLLM `version`, or None (after saying why; a failure under `CI`).
fn sdist(version: &str) -> Option<PathBuf> {
    let dir = std::env::var_os("FORGE_SDIST_DIR")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| Path::new(&h).join(".cache/forge/sdists")))
        .unwrap_or_default();
    let path = dir.join(format!("vllm-{version}.tar.gz"));
    if path.is_file() {
        return Some(path);
    }
    let why = format!(
        "no `{}`: run `scripts/fetch-vllm-sdist.sh {version}` (scripts/test.sh does)",
        path.display()
    );
    assert!(std::env::var_os("CI").is_none(), "CI is set and {why}");
    eprintln!("!!!!!! SKIPPED: {why} !!!!!!");
    if let Some(skips) = std::env::var_os(SKIPS_ENV) {
        use std::io::Write;
        let name = std::thread::current().name().unwrap_or("?").to_owned();
        if let Ok(mut f) = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(skips)
        {
            let _ = writeln!(f, "{name} (no vLLM {version} sdist)");
        }
    }
    None
}

/// `forge recipe from-vllm` on the sdist: the recipe loaded by the strict parser, and the JSON.
fn recipe_from(version: &str) -> Option<(Recipe, serde_json::Value, String)> {
    let sdist = sdist(version)?;
    let tmp = tempdir(version);
    let out = tmp.path().join("new.toml");
    let o = forge(&[
        "recipe",
        "from-vllm",
        sdist.to_str().unwrap(),
        "--arch",
        "gfx1151",
        "-o",
        out.to_str().unwrap(),
        "--json",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let j = json(&o);
    assert_eq!(
        j["verdict"], "pass",
        "the plan's checks against forge's Dockerfile: {j}"
    );
    let text = std::fs::read_to_string(&out).unwrap();
    let recipe = Recipe::from_path(&out, LoadOptions::default())
        .unwrap_or_else(|e| panic!("the written recipe does not load: {e}\n{text}"));
    Some((recipe, j, text))
}

fn assert_refs(r: &Recipe, want: &[(&str, &str)]) {
    for (arg, prefix) in want {
        let got = &r.build_args[*arg];
        assert!(got.starts_with(prefix), "{arg} = {got}, want {prefix}…");
    }
}

fn not_built(j: &serde_json::Value) -> Vec<String> {
    j["pins"]["components"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["fate"]["built"] == "not-built")
        .map(|c| c["name"].as_str().unwrap().to_owned())
        .collect()
}

#[test]
fn v0_12_0_gives_the_shipped_7_1_1_recipes_refs() {
    let Some((r, j, text)) = recipe_from("0.12.0") else {
        return;
    };
    let shipped = Recipe::shipped("7.1.1", LoadOptions::default()).unwrap();
    for arg in [
        "PYTORCH_REF",
        "TRITON_REF",
        "TORCHVISION_REF",
        "TORCHAUDIO_REF",
        "VLLM_REF",
    ] {
        let (got, want) = (&r.build_args[arg], &shipped.build_args[arg]);
        assert!(
            got.starts_with(want.as_str()),
            "{arg}: {got} against the shipped {want}"
        );
    }
    assert_refs(
        &r,
        &[
            ("PYTORCH_REF", "1c57644d4cb3aff84642e1326d88681a656507ce"),
            ("TRITON_REF", "57c693b627fe058878ade4163a0a8df95d9fefa1"),
            ("TORCHVISION_REF", "v0.23.0"),
            ("TORCHAUDIO_REF", "v2.9.0"),
            ("VLLM_REF", "v0.12.0"),
        ],
    );
    assert_eq!(r.archs(), ["gfx1151"]);
    assert_eq!(r.file.base_image, "rocm/dev-ubuntu-24.04:7.1-complete");
    assert_eq!(not_built(&j), ["flash-attention", "aiter"]);
    // both abbreviated commits have a full SHA from a source, named in the recipe
    assert!(
        text.contains("ROCm/ROCm#5695") && text.contains("vllm-project/vllm#28553"),
        "{text}"
    );
}

#[test]
fn v0_28_0_gives_its_own_refs_and_leaves_out_fa_aiter_mori() {
    let Some((r, j, text)) = recipe_from("0.28.0") else {
        return;
    };
    // no source gives these commits' full SHAs: the recipe says what that costs
    assert!(text.contains("full-history fetch"), "{text}");
    assert_refs(
        &r,
        &[
            ("PYTORCH_REF", "6bbd260"),
            ("TRITON_REF", "f0b55c0"),
            ("TORCHVISION_REF", "v0.27.1"),
            ("TORCHAUDIO_REF", "v2.11.0"),
            ("VLLM_REF", "v0.28.0"),
        ],
    );
    assert_eq!(r.rocm_version(), "7.2.3");
    assert_eq!(r.file.base_image, "rocm/dev-ubuntu-24.04:7.2.3-complete");
    assert_eq!(not_built(&j), ["flash-attention", "aiter", "mori"]);
}

#[test]
fn v0_32_0_leaves_out_the_patched_rocm_runtime_too() {
    let Some((r, j, text)) = recipe_from("0.32.0") else {
        return;
    };
    assert_refs(
        &r,
        &[
            ("PYTORCH_REF", "733fca1"),
            // upstream writes 669b31a; its Dockerfile.rocm gives the same commit in full
            ("TRITON_REF", "669b31acc1dd1b3fd93286afd5db67f65d9f7557"),
            ("TORCHVISION_REF", "v0.28.0"),
            ("TORCHAUDIO_REF", "v2.11.0"),
            ("VLLM_REF", "v0.32.0"),
        ],
    );
    assert_eq!(
        not_built(&j),
        [
            "flash-attention",
            "aiter",
            "mori",
            "rocprofiler-sdk",
            "rocm-runtime"
        ]
    );
    assert!(
        text.contains("# - rocm-runtime `af70edc91f1dc5d228fd4c076df99e65e49c4521`"),
        "{text}"
    );
}

#[test]
fn v0_34_0_installs_prebuilt_torch_and_is_refused_with_a_hint() {
    let Some(sdist) = sdist("0.34.0") else {
        return;
    };
    let o = forge(&["recipe", "from-vllm", sdist.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2));
    let e = stderr(&o);
    assert!(
        e.contains("builds no PyTorch from source") && e.contains("hint:"),
        "{e}"
    );
}

#[test]
fn bad_input_exits_2_with_a_hint() {
    let tmp = tempdir("bad");
    let dir = tmp.path();
    let not_tgz = dir.join("vllm.whl");
    std::fs::write(&not_tgz, b"PK\x03\x04 a zip, not a tarball").unwrap();
    let no_base = dir.join("vllm-0.0.1.tar.gz");
    {
        let gz = flate2::write::GzEncoder::new(
            std::fs::File::create(&no_base).unwrap(),
            flate2::Compression::fast(),
        );
        let mut b = tar::Builder::new(gz);
        let mut h = tar::Header::new_gnu();
        h.set_size(1);
        h.set_mode(0o644);
        h.set_cksum();
        b.append_data(&mut h, "vllm-0.0.1/setup.py", &b"x"[..])
            .unwrap();
        b.into_inner().unwrap().finish().unwrap();
    }
    let cases = [
        (dir.join("missing.tar.gz"), "cannot read"),
        (not_tgz, "is not a gzip-compressed tar"),
        (no_base, "holds no `docker/Dockerfile.rocm_base`"),
        (dir.to_path_buf(), "has no `docker/Dockerfile.rocm_base`"),
    ];
    for (path, msg) in cases {
        let o = forge(&["recipe", "from-vllm", path.to_str().unwrap()]);
        let e = stderr(&o);
        assert_eq!(o.status.code(), Some(2), "{}: {e}", path.display());
        assert!(
            e.contains(msg) && e.contains("\nhint: "),
            "{}: {e}",
            path.display()
        );
    }
}

#[test]
fn a_source_tree_needs_its_vllm_ref_and_then_writes_the_recipe() {
    let tmp = tempdir("tree");
    let tree = tmp.path();
    std::fs::create_dir_all(tree.join("docker")).unwrap();
    std::fs::write(
        tree.join("docker/Dockerfile.rocm_base"),
        "ARG BASE_IMAGE=rocm/dev-ubuntu-22.04:7.1-complete\nARG TRITON_BRANCH=\"57c693b6\"\n\
         ARG PYTORCH_BRANCH=\"1c57644d\"\nFROM ${BASE_IMAGE} AS base\n\
         ARG PYTORCH_ROCM_ARCH=gfx90a;gfx942;gfx1151\n",
    )
    .unwrap();
    let o = forge(&["recipe", "from-vllm", tree.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("--vllm-ref"), "{}", stderr(&o));
    let o = forge(&[
        "recipe",
        "from-vllm",
        tree.to_str().unwrap(),
        "--vllm-ref",
        "v0.12.0",
        "--rocm",
        "7.1.1",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(
        text.contains("rocm = \"7.1.1\"") && text.contains("ref = \"v0.12.0\""),
        "{text}"
    );
    assert!(
        text.contains("base-image = \"rocm/dev-ubuntu-24.04:7.1.1-complete\""),
        "{text}"
    );
}

/// `--json` (a result and an error) matches the envelope every command's JSON matches
/// (`src/report/envelope.schema.json`, validated by the `jsonschema` crate as tests/cli.rs does).
#[test]
fn json_matches_the_envelope_schema() {
    let tmp = tempdir("json");
    let dir = tmp.path();
    std::fs::create_dir_all(dir.join("tree/docker")).unwrap();
    std::fs::write(
        dir.join("tree/docker/Dockerfile.rocm_base"),
        "ARG BASE_IMAGE=rocm/dev-ubuntu-22.04:7.2.3-complete\nARG PYTORCH_BRANCH=\"733fca1\"\n",
    )
    .unwrap();
    let tree = dir.join("tree");
    let runs = [
        forge(&[
            "recipe",
            "from-vllm",
            tree.to_str().unwrap(),
            "--vllm-ref",
            "v0.32.0",
            "--json",
        ]),
        forge(&["recipe", "from-vllm", "/nonexistent/vllm.tar.gz", "--json"]),
    ];
    assert_eq!(runs[0].status.code(), Some(0), "{}", stderr(&runs[0]));
    assert_eq!(json(&runs[0])["verdict"], "pass");
    assert_eq!(json(&runs[1])["verdict"], "error");
    let schema = common::schema_validator("src/report/envelope.schema.json");
    let errors: Vec<String> = runs
        .iter()
        .enumerate()
        .flat_map(|(i, o)| {
            common::schema_errors(&schema, &json(o))
                .into_iter()
                .map(move |e| format!("run {i}: {e}"))
        })
        .collect();
    assert!(errors.is_empty(), "{}", errors.join("\n"));
}

/// Issue 21: `forge recipe lock --check` resolves vLLM 0.12.0's real requirements again (uv, as
/// of the sdist's date) and finds the committed lock of the 7.1.1 recipe to be what resolves; a
/// lock with one version changed fails `lock.current`, naming the package. Needs `uv` and the
/// package index on the host (scripts/test.sh installs uv).
#[test]
fn the_committed_lock_is_what_resolves_and_a_changed_pin_is_named() {
    let Some(sdist) = sdist("0.12.0") else { return };
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let o = forge(&[
        "recipe",
        "lock",
        "--recipe",
        root.join("recipes/rocm-7.1.1.toml").to_str().unwrap(),
        "--sdist",
        sdist.to_str().unwrap(),
        "--check",
        "--json",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let j = json(&o);
    assert_eq!(j["checks"][0]["id"], "lock.current", "{j}");
    assert_eq!(j["checks"][0]["status"], "pass", "{j}");
    assert_eq!(j["packages"], 165, "{j}");
    assert_eq!(j["direct"], 64, "{j}");

    // the same recipe beside a lock whose numpy pin moved
    let tmp = tempdir("lock");
    let d = tmp.path();
    let recipe = std::fs::read_to_string(root.join("recipes/rocm-7.1.1.toml"))
        .unwrap()
        .replace(
            "dockerfile = \"../dockerfiles/vllm-rocm.Dockerfile\"",
            "dockerfile = \"forge:vllm-rocm.Dockerfile\"",
        );
    std::fs::write(d.join("r.toml"), recipe).unwrap();
    let lock = std::fs::read_to_string(root.join("recipes/rocm-7.1.1.lock.txt")).unwrap();
    assert!(lock.contains("\nnumpy==2.2.6 \\"));
    std::fs::write(
        d.join("rocm-7.1.1.lock.txt"),
        lock.replace("\nnumpy==2.2.6 \\", "\nnumpy==2.1.0 \\"),
    )
    .unwrap();
    let o = forge(&[
        "recipe",
        "lock",
        "--recipe",
        d.join("r.toml").to_str().unwrap(),
        "--sdist",
        sdist.to_str().unwrap(),
        "--check",
        "--json",
    ]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let j = json(&o);
    let c = &j["checks"][0];
    assert_eq!(c["status"], "fail", "{j}");
    assert!(
        c["evidence"]
            .as_str()
            .unwrap()
            .contains("numpy: 2.1.0 vs 2.2.6"),
        "{j}"
    );
}
