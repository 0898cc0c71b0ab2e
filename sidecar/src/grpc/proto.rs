//! Types and stubs generated from proto/ibex/context/v1/context.proto (see build.rs).

pub mod context {
    pub mod v1 {
        tonic::include_proto!("ibex.context.v1");
    }
}
