# Choices shared by flake.nix and tests/test_nix.py (which evaluates this file offline).
{
  # The nixpkgs interpreter the package set is built for. Every locked package has a wheel or
  # an override for it; Python 3.14 would need more (coincurve and miniupnpc have no 3.14 wheel).
  python = "python313";

  # Linux only: the overrides in ./overrides.nix are checked against the Linux wheels of uv.lock.
  systems = [
    "x86_64-linux"
    "aarch64-linux"
  ];
}
