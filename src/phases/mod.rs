//! The phases of `forge build`, one module each, orchestration only: the checks live in
//! `check/`, the engine in `engine/`, the order and the record in `pipeline/`.

pub mod build;
pub mod export;
pub mod image;
pub mod preflight;
pub mod report;
pub mod runtime;
pub mod wheel;

use crate::pipeline::{Ctx, Gate, Phase, PhaseId};

/// What keeps a wheel out of the image: a wheel that is not a ROCm build, lacks distributed or
/// carries no code for the target arch makes every later phase meaningless. 3.1 (size) and
/// `wheel.glibc` (the manylinux tag) are not here: a wheel that misses them still works in the
/// image it was built for, and the run's verdict fails on them all the same.
const WHEEL_GATES: &[Gate] = &[
    Gate::Check("wheel.flavour", "not a ROCm build of torch"),
    Gate::Check("3.2", "torch.distributed is missing (USE_DISTRIBUTED=0)"),
    Gate::Check("3.3", "PrefixStore is missing: vLLM cannot import it"),
    Gate::Check("3.4", "ProcessGroup is missing: vLLM cannot import it"),
    Gate::Check("3.5", "torch does not link HIP: not a ROCm build"),
    Gate::Check("3.6", "torch's ROCm symbols do not resolve: it cannot load"),
    Gate::Check(
        "wheel.gpu-targets",
        "torch carries no code for the target arch",
    ),
];

/// What keeps a prebuilt recipe's build from starting: the wheel gates, checked on the taken
/// torch before anything compiles, and the taken wheels' presence and pinned hashes.
const TAKEN_GATES: &[Gate] = &[
    Gate::Phase(PhaseId::Plan),
    Gate::Check(
        "wheel.taken",
        "a taken wheel is missing or differs from its pinned SHA256",
    ),
    Gate::Check(
        "wheel.taken-requires",
        "the taken torch requires a ROCm or Triton distribution that no [taken.*] gives",
    ),
    Gate::Check("wheel.flavour", "the taken torch is not a ROCm build"),
    Gate::Check("3.2", "the taken torch lacks torch.distributed"),
    Gate::Check(
        "3.3",
        "the taken torch lacks PrefixStore: vLLM cannot import it",
    ),
    Gate::Check(
        "3.4",
        "the taken torch lacks ProcessGroup: vLLM cannot import it",
    ),
    Gate::Check("3.5", "the taken torch does not link HIP: not a ROCm build"),
    Gate::Check(
        "3.6",
        "the taken torch's ROCm symbols do not resolve against the taken ROCm wheels",
    ),
    Gate::Check(
        "wheel.gpu-targets",
        "the taken torch carries no code for the target arch",
    ),
];

/// The phases for `recipe`: [`BUILD`], or [`PREBUILT`] when it takes torch as a wheel.
pub fn for_recipe(recipe: &crate::recipe::Recipe) -> &'static [Phase] {
    if recipe.taken_torch().is_some() {
        PREBUILT
    } else {
        BUILD
    }
}

fn always(_: &Ctx<'_>) -> std::result::Result<(), String> {
    Ok(())
}

/// `forge build`: every phase, in order.
pub const BUILD: &[Phase] = &[
    Phase {
        id: PhaseId::Plan,
        needs: &[],
        gates: &[],
        cheap: true,
        run: |ctx| Ok(ctx.plan_checks.clone()),
        verify: always,
        over_record: None,
    },
    Phase {
        id: PhaseId::Preflight,
        needs: &[],
        gates: &[],
        cheap: true,
        run: preflight::run,
        verify: always,
        over_record: None,
    },
    Phase {
        id: PhaseId::Build,
        needs: &[PhaseId::Plan],
        gates: &[Gate::Phase(PhaseId::Plan)],
        cheap: false,
        run: build::run,
        verify: build::verify,
        over_record: None,
    },
    Phase {
        id: PhaseId::Wheel,
        needs: &[PhaseId::Build],
        gates: &[],
        cheap: false,
        run: wheel::run,
        verify: always,
        over_record: None,
    },
    Phase {
        id: PhaseId::Image,
        needs: &[PhaseId::Build],
        gates: WHEEL_GATES,
        cheap: false,
        run: image::run,
        verify: image::verify,
        over_record: None,
    },
    Phase {
        id: PhaseId::Runtime,
        needs: &[PhaseId::Image],
        gates: &[],
        cheap: true,
        run: runtime::runtime,
        verify: always,
        over_record: None,
    },
    Phase {
        id: PhaseId::Serve,
        needs: &[PhaseId::Image],
        gates: &[],
        cheap: true,
        run: runtime::serve,
        verify: always,
        over_record: None,
    },
    Phase {
        id: PhaseId::Export,
        needs: &[PhaseId::Image],
        gates: &[],
        cheap: false,
        run: export::run,
        verify: export::verify,
        over_record: None,
    },
    Phase {
        id: PhaseId::Report,
        needs: &[],
        gates: &[],
        cheap: true,
        // Its work is over the record, after every other phase.
        run: |_| Ok(Vec::new()),
        verify: always,
        over_record: Some(report::run),
    },
];

/// `forge build` of a recipe that takes torch as a wheel (`[taken.torch]`): phase 3 runs on the
/// taken wheel first, and its failures stop the run before anything is built (only vLLM compiles,
/// in the build phase, under the monitor).
pub const PREBUILT: &[Phase] = &[
    BUILD[0],
    BUILD[1],
    Phase {
        id: PhaseId::Wheel,
        needs: &[],
        gates: &[],
        cheap: false,
        run: wheel::run,
        verify: wheel::verify_taken,
        over_record: None,
    },
    Phase {
        id: PhaseId::Build,
        needs: &[PhaseId::Plan],
        gates: TAKEN_GATES,
        cheap: false,
        run: build::run,
        verify: build::verify,
        over_record: None,
    },
    BUILD[4],
    BUILD[5],
    BUILD[6],
    BUILD[7],
    BUILD[8],
];
