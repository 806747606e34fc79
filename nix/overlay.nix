# The overlay that applies ./overrides.nix to the package set uv2nix builds from uv.lock.
{ pkgs, lock }:
let
  overrides = import ./overrides.nix;
  wheels = import ./wheels.nix;
  cpu = pkgs.stdenv.hostPlatform.parsed.cpu.name;
in
final: prev:
builtins.mapAttrs (
  name: libraries:
  let
    wheel = wheels.manylinuxWheel cpu (wheels.lockedPackage lock name);
  in
  prev.${name}.overrideAttrs (old: {
    src = pkgs.fetchurl {
      name = wheel.fileName;
      inherit (wheel) url hash;
    };
    buildInputs = (old.buildInputs or [ ]) ++ libraries pkgs;
  })
) overrides.manylinuxWheels
// builtins.mapAttrs (
  name: sdist:
  prev.${name}.overrideAttrs (old: {
    nativeBuildInputs = old.nativeBuildInputs ++ final.resolveBuildSystem sdist.buildSystem;
    buildInputs = (old.buildInputs or [ ]) ++ sdist.libraries pkgs;
  })
) overrides.sdists
