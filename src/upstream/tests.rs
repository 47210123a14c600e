use super::*;
use crate::recipe::{LoadOptions, Origin, Recipe};

/// The head of vLLM 0.28.0's `docker/Dockerfile.rocm_base`, as in its sdist.
const V0_28_HEAD: &str = r#"ARG BASE_IMAGE=rocm/dev-ubuntu-22.04:7.2.3-complete
ARG TRITON_BRANCH="f0b55c0" # release/internal/3.7.x as of 08/18
ARG TRITON_REPO="https://github.com/ROCm/triton.git"
ARG PYTORCH_BRANCH="6bbd260" # release/2.12 as of 08/02
ARG PYTORCH_REPO="https://github.com/ROCm/pytorch.git"
ARG PYTORCH_VISION_BRANCH="v0.27.1"
ARG PYTORCH_VISION_REPO="https://github.com/pytorch/vision.git"
ARG PYTORCH_AUDIO_BRANCH="v2.11.0"
ARG PYTORCH_AUDIO_REPO="https://github.com/pytorch/audio.git"
ARG FA_BRANCH="0e60e394"
ARG FA_REPO="https://github.com/Dao-AILab/flash-attention.git"
ARG AITER_BRANCH="v0.1.19"
ARG AITER_REPO="https://github.com/ROCm/aiter.git"
ARG MORI_BRANCH="v1.1.0"
ARG MORI_REPO="https://github.com/ROCm/mori.git"

FROM ${BASE_IMAGE} AS base
ARG PYTORCH_ROCM_ARCH=gfx90a;gfx942;gfx950;gfx1100;gfx1101;gfx1200;gfx1201;gfx1150;gfx1151
ENV PYTORCH_ROCM_ARCH=${PYTORCH_ROCM_ARCH}
ENV AITER_ROCM_ARCH=gfx942;gfx950
ARG PYTHON_VERSION=3.12
"#;

fn src(text: &str, version: Option<&str>) -> VllmSource {
    VllmSource {
        origin: "vllm-0.28.0.tar.gz".into(),
        rocm_base: text.into(),
        rocm: None,
        version: version.map(str::to_owned),
    }
}

fn opts(arch: &str) -> Options {
    Options {
        archs: vec![arch.into()],
        ..Options::default()
    }
}

#[test]
fn settings_keep_the_value_and_upstreams_comment() {
    let set = settings(V0_28_HEAD);
    let t = set.iter().find(|s| s.name == "TRITON_BRANCH").unwrap();
    assert_eq!(t.value, "f0b55c0");
    assert_eq!(
        t.note.as_deref(),
        Some("release/internal/3.7.x as of 08/18")
    );
    assert_eq!(t.line, 2);
    let a = set.iter().find(|s| s.name == "PYTORCH_ROCM_ARCH").unwrap();
    assert!(a.value.ends_with(";gfx1150;gfx1151"), "{}", a.value);
    assert!(
        set.iter()
            .any(|s| s.name == "AITER_ROCM_ARCH" && s.value == "gfx942;gfx950")
    );
}

#[test]
fn ref_kinds() {
    assert_eq!(RefKind::of("6bbd260"), RefKind::AbbreviatedCommit);
    assert_eq!(
        RefKind::of("1c57644d4cb3aff84642e1326d88681a656507ce"),
        RefKind::FullCommit
    );
    assert_eq!(RefKind::of("v0.27.1"), RefKind::Name);
    assert_eq!(RefKind::of("release/2.12"), RefKind::Name);
    assert_eq!(RefKind::of("deadbee"), RefKind::AbbreviatedCommit);
    assert_eq!(RefKind::of("cafe"), RefKind::Name);
}

#[test]
fn pins_on_gfx1151_build_four_and_record_the_rest() {
    let p = pins(&src(V0_28_HEAD, Some("0.28.0")), &opts("gfx1151")).unwrap();
    assert_eq!(p.vllm_ref, "v0.28.0");
    assert_eq!(p.rocm, "7.2.3");
    assert_eq!(p.base_image, "rocm/dev-ubuntu-24.04:7.2.3-complete");
    assert_eq!(p.archs, ["gfx1151"]);
    let built: Vec<(&str, &str)> = p
        .components
        .iter()
        .filter(|c| matches!(c.fate, Fate::Built { .. }))
        .map(|c| (c.name.as_str(), c.git_ref.as_str()))
        .collect();
    assert_eq!(
        built,
        [
            ("triton", "f0b55c0"),
            ("pytorch", "6bbd260"),
            ("torchvision", "v0.27.1"),
            ("torchaudio", "v2.11.0")
        ]
    );
    for name in ["flash-attention", "aiter", "mori"] {
        let c = p.components.iter().find(|c| c.name == name).unwrap();
        assert!(
            matches!(&c.fate, Fate::NotBuilt { reason } if !reason.contains(" step")),
            "{c:?}"
        );
    }
}

#[test]
fn aiter_applies_to_gfx942_and_forge_says_it_has_no_step() {
    let p = pins(&src(V0_28_HEAD, Some("0.28.0")), &opts("gfx942")).unwrap();
    let c = p.components.iter().find(|c| c.name == "aiter").unwrap();
    assert!(matches!(&c.fate, Fate::NotBuilt { reason } if reason.contains("has no aiter step")));
}

#[test]
fn known_full_sha_is_pinned_with_its_source() {
    let text =
        "ARG BASE_IMAGE=rocm/dev-ubuntu-22.04:7.1-complete\nARG PYTORCH_BRANCH=\"1c57644d\"\n";
    let p = pins(&src(text, Some("0.12.0")), &opts("gfx1151")).unwrap();
    assert_eq!(p.rocm, "7.1");
    let c = &p.components[0];
    assert_eq!(c.pinned_ref(), "1c57644d4cb3aff84642e1326d88681a656507ce");
    assert!(render(&p).contains("ROCm/ROCm#5695"));
}

#[test]
fn written_recipe_loads_with_the_strict_parser() {
    let p = pins(&src(V0_28_HEAD, Some("0.28.0")), &opts("gfx1151")).unwrap();
    let text = render(&p);
    let r = Recipe::parse(
        &text,
        Origin::File("new.toml".into()),
        LoadOptions::default(),
    )
    .unwrap_or_else(|e| panic!("{e}\n{text}"));
    assert_eq!(r.file.name, "vllm-0.28.0-rocm-7.2.3-gfx1151");
    assert_eq!(r.build_args["PYTORCH_REF"], "6bbd260");
    assert_eq!(r.build_args["TORCHAUDIO_REF"], "v2.11.0");
    assert_eq!(r.build_args["VLLM_REF"], "v0.28.0");
    assert!(text.contains("full-history fetch"), "{text}");
    assert!(text.contains("# - mori `v1.1.0`"), "{text}");
}

#[test]
fn prebuilt_torch_and_bad_archs_are_errors_with_hints() {
    let text = "ARG BASE_IMAGE=ubuntu:22.04\nARG TORCH_VERSION=2.13.0+rocm10.0.0\n";
    let e = pins(&src(text, Some("0.34.0")), &opts("gfx1151")).unwrap_err();
    assert!(
        e.to_string()
            .contains("installs prebuilt torch `2.13.0+rocm10.0.0`"),
        "{e}"
    );
    assert!(e.hint().unwrap().contains("PYTORCH_BRANCH"));
    let e = pins(&src(V0_28_HEAD, Some("0.28.0")), &opts("sm_90")).unwrap_err();
    assert!(e.to_string().contains("not a GPU arch"), "{e}");
    let e = pins(&src(V0_28_HEAD, None), &opts("gfx1151")).unwrap_err();
    assert!(e.hint().unwrap().contains("--vllm-ref"), "{e}");
}

#[test]
fn dockerfile_rocm_gives_the_triton_commit_in_full() {
    // vLLM 0.32.0: rocm_base pins TRITON_BRANCH="669b31a"; its Dockerfile.rocm fetches the
    // same ROCm/triton commit's triton_kernels by full SHA.
    let mut s = src(
        "ARG BASE_IMAGE=rocm/dev-ubuntu-22.04:7.2.3-complete\nARG TRITON_BRANCH=\"669b31a\"\nARG PYTORCH_BRANCH=\"733fca1\"\n",
        Some("0.32.0"),
    );
    s.rocm = Some("ARG ROCM_TRITON_KERNELS_COMMIT=669b31acc1dd1b3fd93286afd5db67f65d9f7557\nARG X_COMMIT=733fca1000000000000000000000000000000000\n".into());
    let p = pins(&s, &opts("gfx1151")).unwrap();
    assert_eq!(
        p.components[0].pinned_ref(),
        "669b31acc1dd1b3fd93286afd5db67f65d9f7557"
    );
    assert!(
        p.components[0]
            .full_sha
            .as_ref()
            .unwrap()
            .source
            .contains("ROCM_TRITON_KERNELS_COMMIT")
    );
    // only an ARG named after the component counts
    assert_eq!(p.components[1].pinned_ref(), "733fca1");
}
