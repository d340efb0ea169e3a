//! The OpenAPI 3.1 document: the base (title, security scheme) here, every path and schema
//! from the handlers' annotations as they are mounted.

use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{InfoBuilder, OpenApi, OpenApiBuilder};

/// The document without its paths.
pub(super) fn base() -> OpenApi {
    let mut doc = OpenApiBuilder::new()
        .info(
            InfoBuilder::new()
                .title("fleetca admin API")
                .version(env!("CARGO_PKG_VERSION"))
                .description(Some(
                    "Operator operations of the fleetca IoT certificate authority. \
                     Authenticate with `Authorization: Bearer` and an API token (`fca_...`) \
                     or a login session (`fcs_...`). Errors are RFC 9457 problem details.",
                ))
                .build(),
        )
        .build();
    let components = doc.components.get_or_insert_with(Default::default);
    components.add_security_scheme(
        "bearer",
        SecurityScheme::Http(
            HttpBuilder::new()
                .scheme(HttpAuthScheme::Bearer)
                .description(Some("An API token (fca_...) or a session (fcs_...)"))
                .build(),
        ),
    );
    doc
}

/// The whole document, as served at `/api/v1/openapi.json`.
pub fn openapi() -> OpenApi {
    let (_, doc) = super::routes().split_for_parts();
    doc
}
