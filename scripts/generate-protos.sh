#!/usr/bin/env bash
# Regenerates Sources/ControlProtocol from Protos/ with Debian's protoc and the plugins
# built from the mirrored swift-protobuf / grpc-swift-protobuf (the versions Package.swift
# depends on). The generated code is committed; run this only when a .proto changes.
set -euo pipefail
cd "$(dirname "$0")/.."
GRPC_SWIFT_PROTOBUF_VERSION=2.4.1
PLUGINS=.build-protoc-plugins

command -v protoc >/dev/null || { apt-get update -qq && apt-get install -y -qq protobuf-compiler >/dev/null; }
if [ ! -x "$PLUGINS/grpc-swift-protobuf/.build/release/protoc-gen-grpc-swift-2" ]; then
  mkdir -p "$PLUGINS"
  rm -rf "$PLUGINS/grpc-swift-protobuf"
  git clone -q --branch "$GRPC_SWIFT_PROTOBUF_VERSION" https://github.com/grpc/grpc-swift-protobuf "$PLUGINS/grpc-swift-protobuf"
  swift build -c release --package-path "$PLUGINS/grpc-swift-protobuf" --product protoc-gen-grpc-swift-2
  swift build -c release --package-path "$PLUGINS/grpc-swift-protobuf" --product protoc-gen-swift
fi
BIN="$PLUGINS/grpc-swift-protobuf/.build/release"
OUT=Sources/ControlProtocol/Generated
mkdir -p "$OUT"
protoc --proto_path=Protos \
  --plugin=protoc-gen-swift="$BIN/protoc-gen-swift" \
  --plugin=protoc-gen-grpc-swift="$BIN/protoc-gen-grpc-swift-2" \
  --swift_out="$OUT" --swift_opt=Visibility=Public \
  --grpc-swift_out="$OUT" --grpc-swift_opt=Visibility=Public \
  certgate/control/v1/control.proto
echo "generated into $OUT"
