//! Types and stubs generated from proto/ibex/*/v1/*.proto (see build.rs).

pub mod context {
    pub mod v1 {
        tonic::include_proto!("ibex.context.v1");
    }
}

pub mod auth {
    pub mod v1 {
        tonic::include_proto!("ibex.auth.v1");
    }
}
