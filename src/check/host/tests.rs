use super::*;

/// Shape of real `rocminfo` output on a Ryzen AI MAX+ 395 (ROCm 7.x), trimmed.
pub const ROCMINFO: &str = r"ROCk module version 6.12.12 is loaded
=====================
HSA System Attributes
=====================
Runtime Version:         1.18
Runtime Ext Version:     1.11
System Timestamp Freq.:  1000.000000MHz
Sig. Max Wait Duration:  18446744073709551615 (0xFFFFFFFFFFFFFFFF) (timestamp count)
Machine Model:           LARGE
System Endianness:       LITTLE
Mwaitx:                  DISABLED
XNACK enabled:           NO
DMAbuf Support:          YES
VMM Support:             YES

==========
HSA Agents
==========
*******
Agent 1
*******
  Name:                    AMD RYZEN AI MAX+ 395 w/ Radeon 8060S
  Uuid:                    CPU-XX
  Marketing Name:          AMD RYZEN AI MAX+ 395 w/ Radeon 8060S
  Vendor Name:             CPU
  Feature:                 None specified
  Profile:                 FULL_PROFILE
  Float Round Mode:        NEAR
  Max Queue Number:        0(0x0)
  Queue Min Size:          0(0x0)
  Queue Max Size:          0(0x0)
  Queue Type:              MULTI
  Node:                    0
  Device Type:             CPU
  Cache Info:
    L1:                      49152(0xc000) KB
  Chip ID:                 0(0x0)
  ISA Info:
*******
Agent 2
*******
  Name:                    gfx1151
  Uuid:                    GPU-XX
  Marketing Name:          AMD Radeon Graphics
  Vendor Name:             AMD
  Feature:                 KERNEL_DISPATCH
  Profile:                 BASE_PROFILE
  Node:                    1
  Device Type:             GPU
  Cache Info:
    L1:                      32(0x20) KB
    L2:                      2048(0x800) KB
  Chip ID:                 5510(0x1586)
  ISA Info:
    ISA 1
      Name:                    amdgcn-amd-amdhsa--gfx1151
      Machine Models:          HSA_MACHINE_MODEL_LARGE
    ISA 2
      Name:                    amdgcn-amd-amdhsa--gfx11-generic
      Machine Models:          HSA_MACHINE_MODEL_LARGE
*** Done ***
";

#[test]
fn rocminfo_agents_and_archs() {
    let agents = parse_rocminfo(ROCMINFO);
    assert_eq!(agents.len(), 2);
    assert_eq!(agents[0].device_type, "CPU");
    assert_eq!(agents[1].name, "gfx1151");
    assert_eq!(agents[1].marketing_name, "AMD Radeon Graphics");
    assert_eq!(agents[1].device_type, "GPU");
    assert_eq!(
        agents[1].isas,
        [
            "amdgcn-amd-amdhsa--gfx1151",
            "amdgcn-amd-amdhsa--gfx11-generic"
        ]
    );
    assert_eq!(agent_archs(&agents[1]), ["gfx1151", "gfx11-generic"]);
    assert!(agent_archs(&agents[0]).is_empty());
}

#[test]
fn rocminfo_with_features_in_isa_name() {
    let t = "Agent 1\n  Name: gfx90a\n  Device Type: GPU\n  ISA Info:\n    ISA 1\n      Name: amdgcn-amd-amdhsa--gfx90a:sramecc+:xnack-\n";
    assert_eq!(agent_archs(&parse_rocminfo(t)[0]), ["gfx90a"]);
}

#[test]
fn lsmod_and_proc_modules_shapes() {
    let lsmod = "Module                  Size  Used by\namdgpu              15900672  42\namdxcp                 12288  1 amdgpu\ndrm_exec               12288  1 amdgpu\n";
    assert!(parse_modules(lsmod).contains(&"amdgpu"));
    assert!(!parse_modules(lsmod).contains(&"Module"));
    let proc = "amdxcp 12288 1 amdgpu, Live 0x0000000000000000\namdgpu 15900672 42 - Live 0x0000000000000000\n";
    assert_eq!(parse_modules(proc), ["amdxcp", "amdgpu"]);
    let no_gpu = "overlay 212992 0 - Live 0x0\nbr_netfilter 32768 0 - Live 0x0\n";
    assert!(!parse_modules(no_gpu).contains(&"amdgpu"));
}

#[test]
fn meminfo_values() {
    let t =
        "MemTotal:       131072000 kB\nMemFree:         1000 kB\nMemAvailable:   120000000 kB\n";
    assert_eq!(meminfo_bytes(t, "MemTotal"), Some(131_072_000 * 1024));
    assert_eq!(meminfo_bytes(t, "MemAvailable"), Some(120_000_000 * 1024));
    assert_eq!(meminfo_bytes(t, "Nope"), None);
}

/// A stand-in host under a fresh temp dir, removed (also when the test panics) when the returned
/// guard drops: keep it bound while the paths are used.
fn fake_root() -> (tempfile::TempDir, HostPaths) {
    let tmp = tempfile::Builder::new()
        .prefix("forge-host-")
        .tempdir()
        .unwrap();
    let dir = tmp.path();
    std::fs::create_dir_all(dir.join("dri")).unwrap();
    let paths = HostPaths {
        proc_modules: dir.join("modules"),
        sys_module: dir.join("sys-amdgpu"),
        kfd: dir.join("kfd"),
        dri: dir.join("dri"),
        rocm_version: dir.join("version"),
        group_file: dir.join("group"),
        meminfo: dir.join("meminfo"),
        artifacts: dir.join("artifacts"),
        osrelease: dir.join("osrelease"),
        ttm_pages_limit: dir.join("ttm-pages-limit"),
    };
    (tmp, paths)
}

/// Issue 12, item 12: the archive goes under the artifacts directory, so preflight measures
/// it too (its nearest existing ancestor before the first run creates it), and counts both
/// needs when it shares the engine's filesystem.
#[test]
fn artifacts_disk_is_checked_beside_the_data_root_issue_12() {
    let (tmp, paths) = fake_root();
    let dir = tmp.path();
    let mut r = Recipe::shipped("7.1.1", Default::default()).unwrap();
    r.file.preflight.min_free_artifacts_gb = 1;
    r.file.preflight.min_free_disk_gb = 0;
    let no_engine: Result<crate::engine::EngineInfo, crate::Error> =
        Err(crate::Error::usage("no engine", None));
    let c = check_artifacts_disk(&r, &no_engine, &paths);
    assert_eq!(c.id, "host.disk-artifacts");
    assert!(
        c.evidence.contains("not created yet") && c.evidence.contains(&dir.display().to_string()),
        "{}",
        c.evidence
    );
    let free = free_bytes(dir).unwrap();
    assert_eq!(
        c.status,
        if free >= 1_000_000_000 {
            Status::Pass
        } else {
            Status::Fail
        },
        "{}",
        c.evidence
    );
    r.file.preflight.min_free_artifacts_gb = 1_000_000_000;
    let c = check_artifacts_disk(&r, &no_engine, &paths);
    assert_eq!(c.status, Status::Fail, "{}", c.evidence);
    assert!(c.hint.as_deref().unwrap().contains("--artifacts"));
    // On the engine's own filesystem both needs count against it.
    r.file.preflight.min_free_artifacts_gb = 1;
    r.file.preflight.min_free_disk_gb = 2;
    std::fs::create_dir_all(&paths.artifacts).unwrap();
    let local = Ok(crate::engine::EngineInfo {
        host: "unix:///var/run/docker.sock".into(),
        version: "20.10".into(),
        api_version: "1.41".into(),
        platform: "linux/amd64".into(),
        root_dir: Some(dir.display().to_string()),
        mem_total: None,
        ncpu: None,
        buildkit: true,
        local: true,
        ..Default::default()
    });
    let c = check_artifacts_disk(&r, &local, &paths);
    assert!(
        c.evidence.contains("need 3.0 GB") && c.evidence.contains("the same filesystem"),
        "{}",
        c.evidence
    );
}

#[test]
fn missing_gpu_pieces_fail_with_hints() {
    let (_tmp, paths) = fake_root();
    let r = Recipe::shipped("7.1.1", Default::default()).unwrap();
    std::fs::write(&paths.proc_modules, "overlay 1 0 - Live 0x0\n").unwrap();
    let c = check_amdgpu(&paths);
    assert_eq!(c.status, Status::Fail);
    assert!(c.hint.is_some());
    let c = check_devices(&paths);
    assert_eq!(c.status, Status::Fail);
    assert!(c.evidence.contains("kfd missing") && c.evidence.contains("renderD"));
    let c = check_rocm_version(&r, &paths);
    assert_eq!(c.status, Status::Fail);

    std::fs::write(&paths.proc_modules, "amdgpu 15900672 42 - Live 0x0\n").unwrap();
    assert_eq!(check_amdgpu(&paths).status, Status::Pass);
    std::fs::write(&paths.kfd, "").unwrap();
    std::fs::write(paths.dri.join("renderD128"), "").unwrap();
    assert_eq!(check_devices(&paths).status, Status::Pass);
    std::fs::write(&paths.rocm_version, "7.1.1-43\n").unwrap();
    assert_eq!(check_rocm_version(&r, &paths).status, Status::Pass);
    std::fs::write(&paths.rocm_version, "6.2.4-120\n").unwrap();
    let c = check_rocm_version(&r, &paths);
    assert_eq!(c.status, Status::Fail);
    assert!(c.evidence.contains("6.2.4"));
    std::fs::write(&paths.rocm_version, "7.1.10\n").unwrap();
    assert_eq!(check_rocm_version(&r, &paths).status, Status::Fail);
}

#[test]
fn memory_per_job_uses_max_jobs() {
    let (_tmp, paths) = fake_root();
    let pinned = crate::recipe::SHIPPED[0]
        .2
        .replace("USE_ROCM = \"1\"", "USE_ROCM = \"1\"\nMAX_JOBS = \"4\"");
    let r = Recipe::parse(
        &pinned,
        crate::recipe::Origin::Shipped { file: "t.toml" },
        Default::default(),
    )
    .unwrap();
    let no_engine = Err(Error::usage("x", None));
    std::fs::write(&paths.meminfo, "MemTotal: 131072000 kB\n").unwrap();
    let c = check_memory(&r, &no_engine, &paths);
    assert_eq!(c.status, Status::Pass, "{}", c.evidence);
    std::fs::write(&paths.meminfo, "MemTotal: 24000000 kB\n").unwrap();
    let c = check_memory(&r, &no_engine, &paths);
    assert_eq!(c.status, Status::Fail);
    assert!(
        c.hint.as_deref().unwrap().contains("MAX_JOBS = \"3\""),
        "{:?}",
        c.hint
    );
}

#[test]
fn unpinned_jobs_show_what_the_engine_host_will_get() {
    let (_tmp, paths) = fake_root();
    let r = Recipe::shipped("7.1.1", Default::default()).unwrap();
    // a remote engine on a 16-core box where Linux sees 32 GB (the BIOS gave the rest to the GPU)
    let engine = Ok(EngineInfo {
        host: "tcp://strix:2375".into(),
        version: "27.0".into(),
        api_version: "1.47".into(),
        platform: "linux/amd64".into(),
        root_dir: None,
        mem_total: Some(32 << 30),
        ncpu: Some(16),
        buildkit: true,
        local: false,
        ..Default::default()
    });
    let c = check_memory(&r, &engine, &paths);
    assert_eq!(c.status, Status::Pass, "{}", c.evidence);
    assert!(
        c.evidence.contains("16 CPUs on the engine's machine")
            && c.evidence.contains("build-torch=4")
            && c.evidence.contains("build-triton=1")
            && c.evidence.contains("vllm-build=4"),
        "{}",
        c.evidence
    );
    // less than one job's memory: a finding
    std::fs::write(&paths.meminfo, "MemTotal: 4000000 kB\n").unwrap();
    let c = check_memory(&r, &Err(Error::usage("x", None)), &paths);
    assert_eq!(c.status, Status::Fail, "{}", c.evidence);
}

#[test]
fn missing_rocminfo_is_a_finding() {
    let r = Recipe::shipped("7.1.1", Default::default()).unwrap();
    // Whatever this machine has, 1.3 is never a crash, and without the GPU never a pass.
    let c = check_rocminfo(&r, Duration::from_secs(10));
    if !Path::new("/dev/kfd").exists() {
        assert_eq!(c.status, Status::Fail, "{}", c.evidence);
    }
}

/// Issue 19: what gfx1151 serving needs of the host, as its peers document it.
#[test]
fn kernel_and_gtt_for_serving_on_gfx1151() {
    let (_tmp, paths) = fake_root();
    let r = Recipe::shipped("7.1.1", Default::default()).unwrap();
    assert_eq!(
        kernel_version("6.18.9-200.fc43.x86_64"),
        Some(vec![6, 18, 9])
    );
    assert_eq!(kernel_version("6.8.0-49-generic"), Some(vec![6, 8, 0]));
    std::fs::write(&paths.osrelease, "6.8.0-49-generic\n").unwrap();
    let c = check_kernel(&r, &paths);
    assert_eq!(c.status, Status::Fail, "{}", c.evidence);
    assert!(c.hint.as_deref().unwrap().contains("6.18.4"));
    std::fs::write(&paths.osrelease, "6.18.9-200.fc43.x86_64\n").unwrap();
    assert_eq!(check_kernel(&r, &paths).status, Status::Pass);

    // no amdgpu: not the serving host, a skip that says so
    let c = check_gtt(&r, &paths);
    assert_eq!(c.status, Status::Skip);
    assert!(
        c.evidence.contains("not the host that serves"),
        "{}",
        c.evidence
    );
    std::fs::create_dir_all(paths.sys_module.join("parameters")).unwrap();
    std::fs::write(&paths.meminfo, "MemTotal: 131072000 kB\n").unwrap();
    // TTM's default: half of the memory
    std::fs::write(&paths.ttm_pages_limit, "16384000\n").unwrap();
    std::fs::write(paths.sys_module.join("parameters/gttsize"), "-1\n").unwrap();
    let c = check_gtt(&r, &paths);
    assert_eq!(c.status, Status::Fail, "{}", c.evidence);
    assert!(
        c.hint.as_deref().unwrap().contains("ttm.pages_limit="),
        "{:?}",
        c.hint
    );
    // kyuz0's 124 GB
    std::fs::write(&paths.ttm_pages_limit, "32505856\n").unwrap();
    assert_eq!(check_gtt(&r, &paths).status, Status::Pass);
    // a gttsize below the TTM limit is what the GPU gets
    std::fs::write(paths.sys_module.join("parameters/gttsize"), "32768\n").unwrap();
    assert_eq!(check_gtt(&r, &paths).status, Status::Fail);

    // a recipe for a discrete GPU: both skip with the reason
    let gfx1100 = crate::recipe::SHIPPED[0]
        .2
        .replace("archs = [\"gfx1151\"]", "archs = [\"gfx1100\"]");
    let r = Recipe::parse(
        &gfx1100,
        crate::recipe::Origin::Shipped { file: "t.toml" },
        Default::default(),
    )
    .unwrap();
    assert_eq!(check_kernel(&r, &paths).status, Status::Skip);
    assert_eq!(check_gtt(&r, &paths).status, Status::Skip);
}
