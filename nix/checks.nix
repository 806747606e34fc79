# The test suite as a flake check: pytest over a writable copy of the source tree, with the
# locked dependencies and the dev extra (pytest, hypothesis, ruff) from the Nix virtualenv.
# Tests that need tools missing from the sandbox (nix-instantiate, uv) skip themselves there.
{
  pkgs,
  venv,
  src,
}:
pkgs.runCommand "platform-cli-pytest"
  {
    nativeBuildInputs = [ venv ];
  }
  ''
    cp -r ${src} source
    chmod -R u+w source
    cd source
    export HOME="$TMPDIR"
    python -m pytest -p no:cacheprovider
    touch $out
  ''
