//! [`TypedObject`]: one decoded object of any served kind, so defaults and
//! validation can work on real types instead of loose JSON.

use k8s_openapi::api::{
    apps::v1 as apps, autoscaling::v2 as autoscaling, batch::v1 as batch,
    coordination::v1 as coordination, core::v1 as core, discovery::v1 as discovery,
    scheduling::v1 as scheduling,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde_json::Value;

use crate::types;

macro_rules! typed_objects {
    ($($variant:ident => $ty:ty),* $(,)?) => {
        /// A decoded object of one of the kinds in [`crate::kinds::KINDS`].
        #[derive(Debug, Clone, PartialEq)]
        pub enum TypedObject {
            $($variant(Box<$ty>),)*
        }

        impl TypedObject {
            /// Decode `value` as `kind`, calling `decode` (which reports unknown fields and type errors).
            pub(crate) fn decode_as<E>(
                kind: &str,
                value: Value,
                decode: impl DecodeFn<E>,
            ) -> Option<Result<Self, E>> {
                match kind {
                    $(stringify!($variant) => Some(decode.run::<$ty>(value).map(|o| TypedObject::$variant(Box::new(o)))),)*
                    _ => None,
                }
            }

            /// The object as JSON, as the API serves it.
            pub fn to_value(&self) -> Result<Value, serde_json::Error> {
                match self {
                    $(TypedObject::$variant(o) => serde_json::to_value(o.as_ref()),)*
                }
            }

            pub fn metadata(&self) -> &ObjectMeta {
                match self {
                    $(TypedObject::$variant(o) => &o.metadata,)*
                }
            }

            pub fn metadata_mut(&mut self) -> &mut ObjectMeta {
                match self {
                    $(TypedObject::$variant(o) => &mut o.metadata,)*
                }
            }

            /// The Kubernetes kind name.
            pub fn kind(&self) -> &'static str {
                match self {
                    $(TypedObject::$variant(_) => stringify!($variant),)*
                }
            }
        }
    };
}

/// A strict deserializer for any type (implemented by [`crate::decode`]).
pub(crate) trait DecodeFn<E> {
    fn run<T: serde::de::DeserializeOwned>(&self, value: Value) -> Result<T, E>;
}

typed_objects! {
    Pod => core::Pod,
    Service => core::Service,
    Endpoints => core::Endpoints,
    Namespace => core::Namespace,
    Node => core::Node,
    Event => core::Event,
    ResourceQuota => core::ResourceQuota,
    LimitRange => core::LimitRange,
    Secret => core::Secret,
    ConfigMap => core::ConfigMap,
    ServiceAccount => core::ServiceAccount,
    Deployment => apps::Deployment,
    ReplicaSet => apps::ReplicaSet,
    DaemonSet => apps::DaemonSet,
    Job => batch::Job,
    CronJob => batch::CronJob,
    Lease => coordination::Lease,
    PriorityClass => scheduling::PriorityClass,
    EndpointSlice => discovery::EndpointSlice,
    HorizontalPodAutoscaler => autoscaling::HorizontalPodAutoscaler,
    PodSecurityPolicy => types::PodSecurityPolicy,
    VirtualService => types::VirtualService,
    ServiceMonitor => types::ServiceMonitor,
    Image => types::Image,
}
