{
  description = "Platform: a WASM-first, peer-to-peer validator network for Bittensor subnets";

  inputs = {
    nixpkgs.url = "github:NixOS/nixpkgs/nixos-unstable";

    pyproject-nix = {
      url = "github:pyproject-nix/pyproject.nix";
      inputs.nixpkgs.follows = "nixpkgs";
    };

    uv2nix = {
      url = "github:pyproject-nix/uv2nix";
      inputs.pyproject-nix.follows = "pyproject-nix";
      inputs.nixpkgs.follows = "nixpkgs";
    };

    pyproject-build-systems = {
      url = "github:pyproject-nix/build-system-pkgs";
      inputs.pyproject-nix.follows = "pyproject-nix";
      inputs.uv2nix.follows = "uv2nix";
      inputs.nixpkgs.follows = "nixpkgs";
    };
  };

  outputs =
    {
      self,
      nixpkgs,
      pyproject-nix,
      uv2nix,
      pyproject-build-systems,
    }:
    let
      inherit (nixpkgs) lib;
      settings = import ./nix/settings.nix;
      forAllSystems = lib.genAttrs settings.systems;

      # The project and its locked dependencies, from pyproject.toml and uv.lock.
      workspace = uv2nix.lib.workspace.loadWorkspace { workspaceRoot = ./.; };
      lock = lib.importTOML ./uv.lock;

      pythonSets = forAllSystems (
        system:
        let
          pkgs = nixpkgs.legacyPackages.${system};
        in
        (pkgs.callPackage pyproject-nix.build.packages {
          python = pkgs.${settings.python};
        }).overrideScope
          (
            lib.composeManyExtensions [
              pyproject-build-systems.overlays.wheel
              (workspace.mkPyprojectOverlay { sourcePreference = "wheel"; })
              (import ./nix/overlay.nix { inherit pkgs lock; })
            ]
          )
      );

      # The `platform` command with only the project's runtime dependencies.
      platform = forAllSystems (
        system:
        let
          pythonSet = pythonSets.${system};
          inherit (nixpkgs.legacyPackages.${system}.callPackages pyproject-nix.build.util { }) mkApplication;
        in
        mkApplication {
          venv = pythonSet.mkVirtualEnv "platform-cli-env" workspace.deps.default;
          package = pythonSet.platform-cli;
        }
      );

      # `nix run .#validator -- ARGS` runs `platform up ARGS`; exec hands signals to the node.
      validator = forAllSystems (
        system:
        nixpkgs.legacyPackages.${system}.writeShellApplication {
          name = "platform-validator";
          text = ''exec ${lib.getExe' platform.${system} "platform"} up "$@"'';
        }
      );
    in
    {
      packages = forAllSystems (system: {
        default = platform.${system};
      });

      apps = forAllSystems (system: {
        validator = {
          type = "app";
          program = lib.getExe validator.${system};
          meta.description = "Run a validator node: platform up";
        };
        default = {
          type = "app";
          program = lib.getExe' platform.${system} "platform";
          meta.description = "The platform toolkit";
        };
      });

      devShells = forAllSystems (
        system:
        let
          pkgs = nixpkgs.legacyPackages.${system};
          # The project installed editable from the checkout ($REPO_ROOT, set below).
          pythonSet = pythonSets.${system}.overrideScope (
            workspace.mkEditablePyprojectOverlay { root = "$REPO_ROOT"; }
          );
          venv = pythonSet.mkVirtualEnv "platform-cli-dev-env" workspace.deps.all;
        in
        {
          default = pkgs.mkShell {
            packages = [
              venv
              pkgs.uv
            ];
            env = {
              UV_NO_SYNC = "1";
              UV_PYTHON = pythonSet.python.interpreter;
              UV_PYTHON_DOWNLOADS = "never";
            };
            shellHook = ''
              unset PYTHONPATH
              export REPO_ROOT=$(git rev-parse --show-toplevel)
            '';
          };
        }
      );

      checks = forAllSystems (system: {
        package = self.packages.${system}.default;
        pytest = import ./nix/checks.nix {
          pkgs = nixpkgs.legacyPackages.${system};
          venv = pythonSets.${system}.mkVirtualEnv "platform-cli-test-env" workspace.deps.all;
          src = self;
        };
      });
    };
}
