//! The public API's description and its docs page.
//!
//! - `GET /openapi.json`: OpenAPI 3.1, generated from the handlers' `#[utoipa::path]`
//!   annotations. `http::router` registers each public route through `utoipa-axum`
//!   from the same annotation, so a route cannot exist without being described, nor
//!   be described at a path it is not served at. [`RequestIds`] adds the
//!   `x-request-id` header to every operation and reply.
//! - `GET /docs`: Swagger UI, from assets compiled into the binary (the
//!   `utoipa-swagger-ui` crate's `vendored` feature): it works with no network.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::Path;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use axum::{Extension, Router};
use common::http::TrimmedSlash;
use utoipa::openapi::header::HeaderBuilder;
use utoipa::openapi::path::{ParameterBuilder, ParameterIn};
use utoipa::openapi::{ObjectBuilder, OpenApi, RefOr, Required, Type};
use utoipa::Modify;
use utoipa_swagger_ui::Config;

/// Where the description is served.
const SPEC_PATH: &str = "/openapi.json";

/// The parts of the description that are not a route: title, tags, and `/metrics` (a
/// route every service gets from `common::http`).
#[derive(utoipa::OpenApi)]
#[openapi(
    info(
        title = "toystore",
        description = "An online toy store: look toys up, order them, read orders back. \
                       Every error is `{\"error\": {\"code\": <status>, \"message\": \"...\"}}` \
                       with `code` equal to the HTTP status.",
        license(name = "MIT"),
    ),
    paths(common::metrics::render),
    tags(
        (name = "products", description = "Toys and their stock"),
        (name = "orders", description = "Placing and reading orders"),
        (name = "operations", description = "Status and metrics"),
    ),
)]
pub struct ApiDoc;

/// Adds `x-request-id` to every operation (an optional request header) and to every
/// reply (a response header): see `common::trace`.
pub struct RequestIds;

impl Modify for RequestIds {
    fn modify(&self, api: &mut OpenApi) {
        let string = || ObjectBuilder::new().schema_type(Type::String).build();
        let param = ParameterBuilder::new()
            .name(common::trace::REQUEST_ID_HEADER)
            .parameter_in(ParameterIn::Header)
            .required(Required::False)
            .description(Some(
                "Names this request in every service's log. 1 to 128 visible ASCII \
                 characters without spaces, quotes, commas or backslashes; another value \
                 is replaced by a fresh id.",
            ))
            .schema(Some(string()))
            .build();
        let reply = HeaderBuilder::new()
            .schema(Some(string()))
            .description(Some("The request's id: the one sent, or a fresh one"))
            .build();
        for item in api.paths.paths.values_mut() {
            let operations = [
                &mut item.get,
                &mut item.put,
                &mut item.post,
                &mut item.delete,
                &mut item.head,
                &mut item.patch,
            ];
            for op in operations.into_iter().flatten() {
                op.parameters
                    .get_or_insert_with(Vec::new)
                    .push(RefOr::T(param.clone()));
                for resp in op.responses.responses.values_mut() {
                    if let RefOr::T(resp) = resp {
                        resp.headers.insert(
                            common::trace::REQUEST_ID_HEADER.into(),
                            RefOr::T(reply.clone()),
                        );
                    }
                }
            }
        }
    }
}

/// The served description: `api` (the routes' descriptions merged into [`ApiDoc`])
/// with [`RequestIds`] applied to every operation.
pub fn finish(mut api: OpenApi) -> OpenApi {
    RequestIds.modify(&mut api);
    api
}

/// `GET /openapi.json` (describing `api`, see [`finish`]) and `GET /docs`.
pub fn routes<S: Clone + Send + Sync + 'static>(api: OpenApi) -> Router<S> {
    // Rendered once: the description does not change while the process runs.
    let json = Bytes::from(finish(api).to_pretty_json().unwrap_or_default());
    let config = Arc::new(
        Config::new([SPEC_PATH])
            // Swagger UI would send the description to a public validator otherwise.
            .validator_url("none")
            .try_it_out_enabled(true),
    );
    Router::new()
        .route(
            SPEC_PATH,
            get(move || async move { ([(header::CONTENT_TYPE, "application/json")], json) }),
        )
        .route("/docs", get(docs_root))
        .route("/docs/{*file}", get(docs_file))
        .layer(Extension(config))
}

/// `/docs` redirects to `/docs/`, whose relative links find the assets. The edge
/// trims `/docs/` to `/docs` before routing, hence the marker.
async fn docs_root(
    trimmed: Option<Extension<TrimmedSlash>>,
    Extension(config): Extension<Arc<Config<'static>>>,
) -> Response {
    match trimmed {
        Some(_) => docs_asset("", config),
        None => Redirect::permanent("/docs/").into_response(),
    }
}

async fn docs_file(
    Path(file): Path<String>,
    Extension(config): Extension<Arc<Config<'static>>>,
) -> Response {
    docs_asset(&file, config)
}

fn docs_asset(file: &str, config: Arc<Config<'static>>) -> Response {
    match utoipa_swagger_ui::serve(file, config) {
        Ok(Some(asset)) => {
            let mut resp = (
                [(header::CONTENT_TYPE, asset.content_type)],
                asset.bytes.into_owned(),
            )
                .into_response();
            if asset.gzpipped {
                resp.headers_mut().insert(
                    header::CONTENT_ENCODING,
                    header::HeaderValue::from_static("gzip"),
                );
            }
            resp
        }
        Ok(None) => common::error::error_response(StatusCode::NOT_FOUND, "no such file"),
        Err(e) => {
            tracing::error!(error = %e, "cannot render the docs page");
            common::error::error_response(StatusCode::INTERNAL_SERVER_ERROR, "docs unavailable")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use utoipa::OpenApi as _;

    #[test]
    fn every_operation_names_the_request_id() {
        let api = finish(ApiDoc::openapi());
        let metrics = api
            .paths
            .paths
            .get("/metrics")
            .expect("/metrics is described");
        let op = metrics.get.as_ref().expect("GET /metrics");
        let params = op.parameters.as_ref().expect("parameters");
        let named = |p: &RefOr<utoipa::openapi::path::Parameter>| matches!(p, RefOr::T(p) if p.name == "x-request-id");
        assert!(params.iter().any(named));
    }
}
