//! `/openapi.json` and Swagger UI at `/docs` on a running server: the document is OpenAPI 3.x,
//! names every route of the management API, and each route it names is really served (an
//! anonymous call reaches the route and is refused with 401, not the 404/405 of an unknown
//! route); the UI and its assets come from this server alone.

use reqwest::Method;
use serde_json::Value;

use crate::support::{config, reply, TestServer};

const METHODS: &[&str] = &["get", "post", "put", "patch", "delete"];

#[tokio::test]
async fn the_document_names_every_route_and_each_is_served() {
    let server = TestServer::start(config()).await;
    let response = server.client.get(server.url("/openapi.json")).send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert!(response.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("application/json"));
    let doc: Value = response.json().await.unwrap();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."), "{}", doc["openapi"]);
    assert!(doc["info"]["title"].is_string());
    let paths = doc["paths"].as_object().unwrap();
    let mut operations = 0;
    for (path, item) in paths {
        assert!(path.starts_with("/v1/"), "{path}");
        for method in item
            .as_object()
            .unwrap()
            .keys()
            .filter(|m| METHODS.contains(&m.as_str()))
        {
            operations += 1;
            let concrete = path
                .replace("{id}", "00000000-0000-0000-0000-000000000000")
                .replace("{version}", "1");
            let method = Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
            let answer = reply(
                server
                    .client
                    .request(method.clone(), server.url(&concrete))
                    .send()
                    .await
                    .unwrap(),
            )
            .await;
            answer.error(401, "unauthenticated");
            let operation = &item[method.as_str().to_lowercase()];
            assert!(
                operation["responses"]["401"].is_object(),
                "{method} {path}: 401 documented"
            );
            assert!(
                operation["description"].as_str().unwrap_or("").contains("Scope: `"),
                "{method} {path}: names its scope"
            );
        }
    }
    // api::openapi's unit test holds the document equal to api::routes(); this bounds it from below.
    assert!(operations >= 42, "{operations} operations documented");
    assert_eq!(doc["components"]["securitySchemes"]["bearer"]["scheme"], "bearer");
    server.stop().await;
}

#[tokio::test]
async fn swagger_ui_is_served_offline() {
    let server = TestServer::start(config()).await;
    let page = server.client.get(server.url("/docs")).send().await.unwrap();
    assert_eq!(page.status(), 200);
    assert!(page.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/html"));
    let html = page.text().await.unwrap();
    for external in ["http://", "https://", "//unpkg", "cdn"] {
        assert!(!html.contains(external), "the page names {external}: {html}");
    }
    let mut assets = Vec::new();
    for part in html.split(['"', '\'']) {
        if part.starts_with("/docs/") {
            assets.push(part.to_string());
        }
    }
    assert!(assets.len() >= 3, "{assets:?}");
    for (asset, kind) in [
        ("/docs/swagger-ui-bundle.js", "text/javascript"),
        ("/docs/swagger-ui.css", "text/css"),
        ("/docs/init.js", "text/javascript"),
        ("/docs/favicon-32x32.png", "image/png"),
    ] {
        assert!(assets.iter().any(|a| a == asset), "{asset} linked from the page");
        let response = server.client.get(server.url(asset)).send().await.unwrap();
        assert_eq!(response.status(), 200, "{asset}");
        assert!(
            response.headers()["content-type"].to_str().unwrap().starts_with(kind),
            "{asset}"
        );
        assert!(!response.bytes().await.unwrap().is_empty(), "{asset}");
    }
    let init = server.client.get(server.url("/docs/init.js")).send().await.unwrap();
    let init = init.text().await.unwrap();
    assert!(
        init.contains("\"/openapi.json\"") && init.contains("validatorUrl: null"),
        "{init}"
    );
    let missing = reply(server.client.get(server.url("/docs/nope.js")).send().await.unwrap()).await;
    missing.error(404, "not_found");
    server.stop().await;
}
