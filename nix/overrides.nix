# The packages of uv.lock that uv2nix cannot take as locked when it prefers wheels, and what
# each needs instead. tests/test_nix.py evaluates this file and checks it against uv.lock both
# ways: every package that needs an entry has one, and every entry is still needed.
{
  # The generic py3-none-any wheel ties with the manylinux wheel in pyproject.nix's wheel
  # selection (same language tag) and wins by its place in uv.lock, so the manylinux wheel of
  # the build's CPU is pinned instead. The value lists the libraries its shared objects link
  # beyond glibc: uv2nix adds the manylinux libraries only for the wheel it selected itself.
  manylinuxWheels = {
    # The any wheel holds only wasmtime/win32-x86_64/_wasmtime.dll; _libwasmtime.so needs
    # libgcc_s.so.1.
    wasmtime = pkgs: [ (pkgs.lib.getLib pkgs.stdenv.cc.cc) ];
  };

  # No Linux wheel at all: built from the sdist. uv.lock does not record build systems, so each
  # names its PEP 517 build system, and the C libraries it links.
  sdists = {
    # A C extension over GMP (setup.py: libraries=['gmp']); pyproject.toml: setuptools>=61.
    fastecdsa = {
      buildSystem = {
        setuptools = [ ];
      };
      libraries = pkgs: [ pkgs.gmp ];
    };
    # A setup.py without [build-system]: setuptools' legacy backend.
    python-baseconv = {
      buildSystem = {
        setuptools = [ ];
        wheel = [ ];
      };
      libraries = _: [ ];
    };
    # A setup.py without [build-system]: setuptools' legacy backend.
    varint = {
      buildSystem = {
        setuptools = [ ];
        wheel = [ ];
      };
      libraries = _: [ ];
    };
  };
}
