//! Label selectors in the Kubernetes style (issue #8; being built).
