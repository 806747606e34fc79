# Finding a locked package's manylinux wheel in uv.lock. Builtins only, so that
# tests/test_nix.py can evaluate it without nixpkgs.
let
  inherit (builtins)
    any
    baseNameOf
    filter
    head
    isString
    length
    match
    split
    toString
    ;

  # PEP 427: {distribution}-{version}(-{build})?-{python}-{abi}-{platform}.whl, where each tag
  # field may hold several tags joined by dots.
  platformTags =
    fileName: filter isString (split "\\." (head (match ".*-([^-]+)\\.whl" fileName)));

  # manylinux1_x86_64, manylinux2014_aarch64, manylinux_2_17_x86_64, ...
  isManylinuxTag = cpu: tag: match "manylinux(1|2010|2014|_[0-9]+_[0-9]+)_${cpu}" tag != null;

  exactlyOne =
    what: found:
    if length found == 1 then
      head found
    else
      throw "nix/wheels.nix: expected exactly one ${what} in uv.lock, found ${toString (length found)}";
in
{
  inherit platformTags;

  # The locked entry of a package (uv.lock holds one version of it for every Python here).
  lockedPackage = lock: name: exactlyOne "version of ${name}" (filter (p: p.name == name) lock.package);

  # The manylinux wheel of a locked package for a CPU as nixpkgs names it (x86_64, aarch64):
  # its url and hash from uv.lock, with the file name the installer expects.
  manylinuxWheel =
    cpu: package:
    let
      withName = map (wheel: wheel // { fileName = baseNameOf wheel.url; }) (package.wheels or [ ]);
    in
    exactlyOne "manylinux ${cpu} wheel of ${package.name}" (
      filter (wheel: any (isManylinuxTag cpu) (platformTags wheel.fileName)) withName
    );
}
