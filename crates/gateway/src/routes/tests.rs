use super::*;

fn config() -> Config {
    Config::with_backends("127.0.0.1:0".parse().unwrap(), Vec::new())
}

fn error(text: &str) -> (usize, String) {
    parse(text, &config(), None).unwrap_err()
}

const FILE: &str = r#"
[[route]]
name = "api"
host = "API.example.com"
path_prefix = "/api/"
algorithm = "least-conn"
backends = ["http://127.0.0.1:9001=2", "http://127.0.0.1:9002"]

[[route]]
name = "static"
path_prefix = "/static/"
algorithm = "consistent-hash"
hash_key = "path"
backends = ["http://127.0.0.1:9003"]
"#;

#[test]
fn routes_are_matched_by_host_and_path_prefix_in_order() {
    let routes = Routes {
        routes: parse(FILE, &config(), None).unwrap(),
    };
    assert_eq!(
        routes.routes[0].pool.balancer.algorithm(),
        Algorithm::LeastConn
    );
    assert_eq!(routes.routes[0].pool.backends[0].weight, 2);
    assert_eq!(routes.routes[1].hash_key, HashKey::Path);
    let name = |host, path| routes.select(host, path).map(|r| r.name.as_str());
    assert_eq!(
        name(Some("api.example.com:8000"), "/api/users"),
        Some("api")
    );
    assert_eq!(name(Some("other.test"), "/api/users"), None);
    assert_eq!(name(None, "/static/app.js"), Some("static"));
    assert_eq!(name(None, "/"), None);
}

#[test]
fn a_syntax_error_names_its_line() {
    let (line, reason) = error("[[route]]\nname = \"a\"\nbackends = [\n");
    assert_eq!(line, 4, "{reason}");
}

#[test]
fn bad_values_name_their_line_and_reason() {
    let cases = [
        (
            "[[route]]\nname = \"a\"\nalgorithm = \"fastest\"\nbackends = [\"http://a:1\"]\n",
            3,
            "unknown algorithm",
        ),
        (
            "[[route]]\nname = \"a\"\nbackends = [\n  \"http://a:1\",\n  \"ftp://b:2\",\n]\n",
            5,
            "scheme",
        ),
        (
            "[[route]]\nname = \"a\"\npath_prefix = \"api\"\nbackends = [\"http://a:1\"]\n",
            3,
            "start with",
        ),
        ("[[route]]\nname = \"a\"\nbackends = []\n", 3, "no backends"),
        (
            "[[route]]\nname = \"a\"\nhash_key = \"body\"\nbackends = [\"http://a:1\"]\n",
            3,
            "not one of",
        ),
        (
            "[[route]]\nname = \"a\"\nweight = 3\nbackends = [\"http://a:1\"]\n",
            3,
            "unknown field",
        ),
    ];
    for (text, want_line, want_reason) in cases {
        let (line, reason) = error(text);
        assert_eq!(line, want_line, "{text}: {reason}");
        assert!(reason.contains(want_reason), "{text}: {reason}");
    }
}

#[test]
fn the_flags_backends_form_a_last_catch_all_route() {
    let dir = std::env::temp_dir().join(format!("gw-routes-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("gateway.toml");
    std::fs::write(&path, FILE).unwrap();
    let mut cfg = config();
    cfg.config = Some(path.clone());
    cfg.backends = vec!["http://127.0.0.1:9009".parse().unwrap()];
    let routes = Routes::load(&cfg, None).unwrap();
    assert_eq!(routes.select(None, "/anything").unwrap().name, "default");
    std::fs::write(&path, "[[route]]\nname = 1\n").unwrap();
    let err = Routes::load(&cfg, None).unwrap_err();
    assert_eq!(err.line, 2, "{err}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn tcp_routes_need_their_own_listen_address_and_http_routes_refuse_one() {
    let mut tcp = config();
    tcp.mode = crate::config::Mode::Tcp;
    let two_without = "[[route]]\nname = \"a\"\nbackends = [\"tcp://127.0.0.1:1\"]\n\
                       [[route]]\nname = \"b\"\nbackends = [\"tcp://127.0.0.1:2\"]\n";
    let (line, reason) = parse(two_without, &tcp, None).unwrap_err();
    assert_eq!(line, 5, "{reason}");
    assert!(reason.contains("needs a `listen`"), "{reason}");
    let clash = "[[route]]\nname = \"a\"\nlisten = \"127.0.0.1:7000\"\nbackends = [\"tcp://127.0.0.1:1\"]\n\
                 [[route]]\nname = \"b\"\nlisten = \"127.0.0.1:7000\"\nbackends = [\"tcp://127.0.0.1:2\"]\n";
    let (line, reason) = parse(clash, &tcp, None).unwrap_err();
    assert_eq!(
        (line, reason.contains("already a listener")),
        (7, true),
        "{reason}"
    );
    let bad = "[[route]]\nname = \"a\"\nlisten = \"nowhere\"\nbackends = [\"tcp://127.0.0.1:1\"]\n";
    assert!(
        parse(bad, &tcp, None)
            .unwrap_err()
            .1
            .contains("not an address")
    );
    let routes = parse(
        "[[route]]\nname = \"a\"\nlisten = \"127.0.0.1:7001\"\nbackends = [\"tcp://127.0.0.1:1\"]\n\
         [[route]]\nname = \"b\"\nbackends = [\"tcp://127.0.0.1:2\"]\n",
        &tcp,
        None,
    )
    .unwrap();
    assert_eq!(routes[0].listen, Some("127.0.0.1:7001".parse().unwrap()));
    assert_eq!(routes[1].listen, None);
    let in_http = "[[route]]\nname = \"a\"\nlisten = \"127.0.0.1:7000\"\nbackends = [\"http://127.0.0.1:1\"]\n";
    let (line, reason) = error(in_http);
    assert_eq!((line, reason.contains("--mode tcp")), (3, true), "{reason}");
}

#[test]
fn two_routes_with_one_name_are_refused() {
    let text = "[[route]]\nname = \"a\"\nbackends = [\"http://127.0.0.1:1\"]\n\
                [[route]]\nname = \"a\"\nbackends = [\"http://127.0.0.1:2\"]\n";
    let (line, reason) = error(text);
    assert_eq!(
        (line, reason.contains("comes earlier")),
        (5, true),
        "{reason}"
    );
}
