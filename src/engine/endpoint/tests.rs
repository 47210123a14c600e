use std::collections::BTreeMap;
use std::path::Path;

use super::*;

/// A fresh, empty temp dir `forge-endpoint-{name}-XXXXXX`, removed (also when the test panics)
/// when the returned guard drops: keep it bound while its path is used.
fn dir(name: &str) -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix(&format!("forge-endpoint-{name}-"))
        .tempdir()
        .unwrap()
}

/// A context as `docker context create NAME --docker host=HOST` writes it.
fn context(config: &Path, name: &str, host: &str, tls: bool) {
    let meta = config.join("contexts/meta").join(context_id(name));
    std::fs::create_dir_all(&meta).unwrap();
    std::fs::write(
        meta.join("meta.json"),
        format!(
            r#"{{"Name":"{name}","Metadata":{{"Description":""}},"Endpoints":{{"docker":{{"Host":"{host}","SkipTLSVerify":false}}}}}}"#
        ),
    )
    .unwrap();
    if tls {
        let t = config
            .join("contexts/tls")
            .join(context_id(name))
            .join("docker");
        std::fs::create_dir_all(&t).unwrap();
        for f in ["ca.pem", "cert.pem", "key.pem"] {
            std::fs::write(t.join(f), "x").unwrap();
        }
    }
}

fn resolve_in(flag: Option<&str>, vars: &[(&str, &str)], home: &Path) -> Result<Endpoint> {
    with_env(vars, home, |env| resolve(flag, env))
}

/// `f` on an environment of `vars` with `home` as the home directory.
fn with_env<T>(vars: &[(&str, &str)], home: &Path, f: impl FnOnce(&Env<'_>) -> T) -> T {
    let vars: BTreeMap<String, String> = vars
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    let get = move |k: &str| vars.get(k).cloned();
    f(&Env {
        var: &get,
        home: Some(home.to_owned()),
    })
}

#[test]
fn context_directory_is_the_sha256_of_the_name() {
    // what the docker CLI's context store names `box` (sha256 of the bytes "box")
    assert_eq!(
        context_id("box"),
        "26f8567f2569182294c3fa5b9f9cb2270b554eef628b4c149cf82a42888ff4ae"
    );
}

#[test]
fn precedence_is_the_clis() {
    let tmp_home = dir("precedence");
    let home = tmp_home.path();
    let config = home.join(".docker");
    context(&config, "flag", "ssh://f@flaghost", false);
    context(&config, "envctx", "tcp://envctx:2375", false);
    context(&config, "current", "ssh://current", false);
    std::fs::write(
        config.join("config.json"),
        r#"{"currentContext":"current"}"#,
    )
    .unwrap();
    let all = [
        ("DOCKER_HOST", "unix:///run/other.sock"),
        ("DOCKER_CONTEXT", "envctx"),
    ];

    let e = resolve_in(Some("flag"), &all, home).unwrap();
    assert_eq!(
        (e.source.clone(), e.host.as_str()),
        (Source::ContextFlag, "ssh://f@flaghost")
    );
    assert!(
        e.describe().contains("context `flag` from --context"),
        "{}",
        e.describe()
    );

    let e = resolve_in(None, &all, home).unwrap();
    assert_eq!(
        (e.source, e.host.as_str()),
        (Source::DockerHost, "unix:///run/other.sock")
    );

    let e = resolve_in(None, &all[1..], home).unwrap();
    assert_eq!(
        (e.source, e.host.as_str()),
        (Source::DockerContext, "tcp://envctx:2375")
    );

    let e = resolve_in(None, &[], home).unwrap();
    assert_eq!(
        (e.source.clone(), e.host.as_str()),
        (Source::CurrentContext, "ssh://current")
    );
    assert!(
        e.describe().contains("currentContext of"),
        "{}",
        e.describe()
    );

    std::fs::remove_file(config.join("config.json")).unwrap();
    let e = resolve_in(None, &[], home).unwrap();
    assert_eq!(
        (e.source, e.host.as_str()),
        (Source::Default, DEFAULT_SOCKET)
    );
    assert!(e.transport.local());

    // `default` is the environment's engine, whichever way it is named
    let e = resolve_in(Some("default"), &all, home).unwrap();
    assert_eq!(e.host, "unix:///run/other.sock");
}

#[test]
fn docker_config_moves_the_config_directory() {
    let tmp_home = dir("dockerconfig-home");
    let home = tmp_home.path();
    let tmp_other = dir("dockerconfig-other");
    let other = tmp_other.path();
    context(other, "box", "ssh://me@box:2222", false);
    std::fs::write(other.join("config.json"), r#"{"currentContext":"box"}"#).unwrap();
    let e = resolve_in(None, &[("DOCKER_CONFIG", other.to_str().unwrap())], home).unwrap();
    assert_eq!(e.context.as_deref(), Some("box"));
    assert_eq!(
        e.transport,
        Transport::Ssh {
            user: Some("me".into()),
            host: "box".into(),
            port: Some(2222),
            socket: None
        }
    );
    // without DOCKER_CONFIG, ~/.docker has no such context
    assert_eq!(resolve_in(None, &[], home).unwrap().source, Source::Default);
}

#[test]
fn tls_from_the_environment_and_from_a_context() {
    let tmp_home = dir("tls");
    let home = tmp_home.path();
    let e = resolve_in(
        None,
        &[
            ("DOCKER_HOST", "tcp://127.0.0.1"),
            ("DOCKER_TLS_VERIFY", "1"),
            ("DOCKER_CERT_PATH", "/certs"),
        ],
        home,
    )
    .unwrap();
    let Transport::Tls { addr, files } = &e.transport else {
        panic!("{:?}", e.transport)
    };
    assert_eq!(addr, "127.0.0.1:2376");
    assert_eq!(files.key, Path::new("/certs/key.pem"));
    assert_eq!(e.transport.kind(), "tcp+tls");

    // no DOCKER_CERT_PATH: the config directory
    let e = resolve_in(
        None,
        &[("DOCKER_HOST", "tcp://h:1234"), ("DOCKER_TLS_VERIFY", "1")],
        home,
    )
    .unwrap();
    let Transport::Tls { files, .. } = &e.transport else {
        panic!()
    };
    assert_eq!(files.ca, home.join(".docker/ca.pem"));

    // without DOCKER_TLS_VERIFY, plain tcp on 2375
    let e = resolve_in(None, &[("DOCKER_HOST", "tcp://h")], home).unwrap();
    assert_eq!(
        e.transport,
        Transport::Tcp {
            addr: "h:2375".into()
        }
    );

    // a context with TLS material
    let config = home.join(".docker");
    context(&config, "secure", "tcp://10.0.0.2:2376", true);
    let e = resolve_in(Some("secure"), &[], home).unwrap();
    let Transport::Tls { files, .. } = &e.transport else {
        panic!("{:?}", e.transport)
    };
    assert!(
        files
            .cert
            .starts_with(config.join("contexts/tls").join(context_id("secure")))
    );
    assert_eq!(files.missing(), None);
}

#[test]
fn unknown_context_says_so_with_a_hint() {
    let tmp_home = dir("unknown");
    let home = tmp_home.path();
    let err = resolve_in(Some("nosuch"), &[], home).unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains("no docker context `nosuch`"), "{msg}");
    assert!(msg.contains("--context"), "{msg}");
    assert!(err.hint().unwrap().contains("docker context ls"));

    // a currentContext naming a removed context
    std::fs::create_dir_all(home.join(".docker")).unwrap();
    std::fs::write(
        home.join(".docker/config.json"),
        r#"{"currentContext":"gone"}"#,
    )
    .unwrap();
    let err = resolve_in(None, &[], home).unwrap_err();
    assert!(err.to_string().contains("currentContext"), "{err}");
    assert!(err.hint().unwrap().contains("docker context use default"));
}

#[test]
fn skip_tls_verify_is_refused() {
    let tmp_home = dir("skipverify");
    let home = tmp_home.path();
    let meta = home.join(".docker/contexts/meta").join(context_id("loose"));
    std::fs::create_dir_all(&meta).unwrap();
    std::fs::write(
        meta.join("meta.json"),
        r#"{"Name":"loose","Endpoints":{"docker":{"Host":"tcp://h:2376","SkipTLSVerify":true}}}"#,
    )
    .unwrap();
    let err = resolve_in(Some("loose"), &[], home).unwrap_err();
    assert!(err.to_string().contains("skips TLS verification"), "{err}");
}

#[test]
fn urls() {
    let ssh = |u: &str| Transport::parse(u, None);
    assert_eq!(
        ssh("ssh://box").unwrap(),
        Transport::Ssh {
            user: None,
            host: "box".into(),
            port: None,
            socket: None
        }
    );
    assert_eq!(
        ssh("ssh://me@[::1]:22/run/user/1000/docker.sock").unwrap(),
        Transport::Ssh {
            user: Some("me".into()),
            host: "::1".into(),
            port: Some(22),
            socket: Some("/run/user/1000/docker.sock".into())
        }
    );
    assert!(
        ssh("ssh://me@box:notaport")
            .unwrap_err()
            .to_string()
            .contains("not a number")
    );
    assert!(
        ssh("ssh://-oProxyCommand=x").is_err(),
        "an option is not a host"
    );
    assert!(ssh("ssh://@box").is_err());
    assert!(
        ssh("npipe:////./pipe/docker_engine")
            .unwrap_err()
            .to_string()
            .contains("npipe")
    );
    assert!(
        ssh("/var/run/docker.sock")
            .unwrap_err()
            .to_string()
            .contains("no scheme")
    );
    assert!(ssh("https://h:2376").is_err(), "https without certificates");
    assert_eq!(
        ssh("unix:///var/run/docker.sock").unwrap().describe(),
        "unix socket /var/run/docker.sock"
    );
    assert!(
        ssh("ssh://me@box:2222")
            .unwrap()
            .describe()
            .starts_with("ssh me@box:2222 running `docker system dial-stdio`")
    );
}

#[test]
fn the_gpu_engine_is_a_url_or_a_context_never_the_build_engines_setting() {
    let tmp_home = dir("gpu-engine");
    let home = tmp_home.path();
    let config = home.join(".docker");
    context(&config, "strix", "ssh://me@strix", false);
    with_env(&[("DOCKER_HOST", "unix:///run/build.sock")], home, |env| {
        // a context by name: DOCKER_HOST (the build engine's) does not win over it
        let e = resolve_named("strix", env).unwrap();
        assert_eq!(e.host, "ssh://me@strix");
        assert_eq!(e.source, Source::GpuEngineFlag);
        assert!(
            e.describe().contains("context `strix` from --gpu-engine"),
            "{}",
            e.describe()
        );
        // a URL as it is
        let e = resolve_named("tcp://strix:2375", env).unwrap();
        assert_eq!(e.transport.kind(), "tcp");
        assert!(e.describe().ends_with("(--gpu-engine)"), "{}", e.describe());
        // a context that does not exist says which flag named it
        let err = resolve_named("nosuch", env).unwrap_err().to_string();
        assert!(
            err.contains("nosuch") && err.contains("--gpu-engine"),
            "{err}"
        );
        assert!(resolve_named("", env).is_err());
        assert!(resolve_named("ftp://x", env).is_err());
    });
}
