//! esprit control plane: IKEv2 per RFC 7296.
