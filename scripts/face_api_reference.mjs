// Reference outputs of the original face-api (TF.js, cpu backend) for test/test_face_analysis.py.
// Usage (once the package is unpacked, e.g. `npm pack @vladmandic/face-api@1.7.15 && tar xzf *.tgz`):
//   node scripts/face_api_reference.mjs <package dir> <model dir> <input.json> > reference.json
// input.json: {"size": 112, "pixels": [... size*size*3 RGB values 0..255, row-major ...]}.
import fs from 'fs';

const [packageDir, modelDir, inputPath] = process.argv.slice(2);
// The bundle's Node platform needs Node's util module it does not bundle: present as a plain JS runtime.
const saved = process.versions;
Object.defineProperty(process, 'versions', { value: { ...saved, node: undefined } });
const faceapi = await import(`${packageDir}/dist/face-api.esm.js`);
const { tf } = faceapi;
tf.env().setPlatform('plain', {
  fetch,
  now: () => performance.now(),
  encode: (s) => new TextEncoder().encode(s),
  decode: (b) => new TextDecoder().decode(b),
  isTypedArray: (a) => ArrayBuffer.isView(a) && !(a instanceof DataView),
  setTimeoutCustom: setTimeout,
});
await tf.setBackend('cpu');
class Unused {}
faceapi.env.setEnv({
  Canvas: Unused, CanvasRenderingContext2D: Unused, Image: Unused, ImageData: Unused, Video: Unused,
  createCanvasElement: () => ({}), createImageElement: () => ({}), fetch, readFile: () => null,
});

function load(net, name) {
  const [group] = JSON.parse(fs.readFileSync(`${modelDir}/${name}-weights_manifest.json`));
  const buffer = Buffer.concat(group.paths.map((p) => fs.readFileSync(`${modelDir}/${p}`)));
  const bytes = buffer.buffer.slice(buffer.byteOffset, buffer.byteOffset + buffer.byteLength);
  net.loadFromWeightMap(tf.io.decodeWeights(bytes, group.weights));
}

const input = JSON.parse(fs.readFileSync(inputPath));
const x = tf.tensor4d(input.pixels, [1, input.size, input.size, 3]);
const x2 = x.resizeNearestNeighbor([2 * input.size, 2 * input.size]);
const border = (150 - input.size) / 2; // the descriptor net's 150² input: the crop with a zero border
const x150 = x.pad([[0, 0], [border, border], [border, border], [0, 0]]);
load(faceapi.nets.ageGenderNet, 'age_gender_model');
load(faceapi.nets.faceLandmark68Net, 'face_landmark_68_model');
load(faceapi.nets.faceExpressionNet, 'face_expression_model');
load(faceapi.nets.tinyFaceDetector, 'tiny_face_detector_model');
load(faceapi.nets.faceRecognitionNet, 'face_recognition_model');
const ag = faceapi.nets.ageGenderNet.forwardInput(await faceapi.toNetInput(x));
const landmarks = faceapi.nets.faceLandmark68Net.forwardInput(await faceapi.toNetInput(x));
const expressions = faceapi.nets.faceExpressionNet.forwardInput(await faceapi.toNetInput(x));
const detector = faceapi.nets.tinyFaceDetector.forwardInput(await faceapi.toNetInput(x2), 2 * input.size);
const descriptor = faceapi.nets.faceRecognitionNet.forwardInput(await faceapi.toNetInput(x150));
console.log(JSON.stringify({
  descriptor: Array.from(descriptor.dataSync()),
  age: Array.from(ag.age.dataSync()),
  gender: Array.from(ag.gender.dataSync()),
  landmarks: Array.from(landmarks.dataSync()),
  expressions: Array.from(expressions.dataSync()),
  detector: Array.from(detector.dataSync()),
  detector_shape: detector.shape,
}));
