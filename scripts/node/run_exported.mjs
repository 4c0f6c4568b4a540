// Run a graph written by `predict export` with onnxruntime-node, and write its outputs as JSON.
//
//   node scripts/node/run_exported.mjs MODEL.onnx FEEDS.json OUT.json
//
// FEEDS.json names each graph input's element type, dims and a raw little-endian file holding it
// (paths relative to FEEDS.json), e.g. the decoded uint8 images:
//   {"image": {"type": "uint8", "dims": [16, 64, 64, 3], "file": "image.bin"},
//    "original_sizes": {"type": "int64", "dims": [16, 2], "file": "original_sizes.bin"}}
// OUT.json: {"metadata": {key: value}, "outputs": {name: {"type", "dims", "data"}}}; int64 values
// become numbers, strings stay strings. onnxruntime-node has no call for the model's metadata_props,
// so they are read from the file's protobuf here (ModelProto field 14: key 1, value 2).
import { readFileSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import ort from "onnxruntime-node";

const ARRAYS = {
  uint8: Uint8Array,
  int8: Int8Array,
  int32: Int32Array,
  int64: BigInt64Array,
  float32: Float32Array,
  float64: Float64Array,
};

function readVarint(bytes, state) {
  let value = 0n;
  let shift = 0n;
  for (;;) {
    const byte = bytes[state.at++];
    value |= BigInt(byte & 0x7f) << shift;
    if (byte < 0x80) return value;
    shift += 7n;
  }
}

function fields(bytes, start, end, visit) {
  const state = { at: start };
  while (state.at < end) {
    const tag = Number(readVarint(bytes, state));
    const number = tag >> 3;
    const wire = tag & 7;
    if (wire === 0) readVarint(bytes, state);
    else if (wire === 1) state.at += 8;
    else if (wire === 5) state.at += 4;
    else if (wire === 2) {
      const length = Number(readVarint(bytes, state));
      visit(number, state.at, state.at + length);
      state.at += length;
    } else throw new Error(`unexpected protobuf wire type ${wire}`);
  }
}

function metadataProps(bytes) {
  const decoder = new TextDecoder();
  const found = {};
  fields(bytes, 0, bytes.length, (number, start, end) => {
    if (number !== 14) return;
    const entry = {};
    fields(bytes, start, end, (inner, from, to) => {
      entry[inner] = decoder.decode(bytes.subarray(from, to));
    });
    found[entry[1]] = entry[2] ?? "";
  });
  return found;
}

function feedsFrom(path) {
  const spec = JSON.parse(readFileSync(path, "utf8"));
  const feeds = {};
  for (const [name, input] of Object.entries(spec)) {
    const raw = readFileSync(join(dirname(path), input.file));
    const Kind = ARRAYS[input.type];
    const data = new Kind(raw.buffer.slice(raw.byteOffset, raw.byteOffset + raw.byteLength));
    feeds[name] = new ort.Tensor(input.type, data, input.dims);
  }
  return feeds;
}

function plain(tensor) {
  const data = Array.from(tensor.data, (value) => (typeof value === "bigint" ? Number(value) : value));
  return { type: tensor.type, dims: Array.from(tensor.dims), data };
}

const [modelPath, feedsPath, outPath] = process.argv.slice(2);
if (!outPath) {
  console.error("usage: node run_exported.mjs MODEL.onnx FEEDS.json OUT.json");
  process.exit(2);
}
const session = await ort.InferenceSession.create(modelPath);
const results = await session.run(feedsFrom(feedsPath));
const outputs = {};
for (const name of session.outputNames) outputs[name] = plain(results[name]);
const metadata = metadataProps(new Uint8Array(readFileSync(modelPath)));
writeFileSync(outPath, JSON.stringify({ metadata, outputs }));
console.log(`onnxruntime-node ${ort.env.versions?.node ?? ""}: ${session.outputNames.join(", ")} -> ${outPath}`);
