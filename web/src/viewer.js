// viewer.js — the NiiVue scene of one case: the scan, the mask as a label
// overlay in the model's label colours, an optional uncertainty heatmap, three
// planes (or one) with crosshair. Knows nothing of the API: it is handed bytes.

import { Niivue, NVImage, SLICE_TYPE, SHOW_RENDER, MULTIPLANAR_TYPE } from '@niivue/niivue';

export const VIEWS = {
  multiplanar: SLICE_TYPE.MULTIPLANAR,
  axial: SLICE_TYPE.AXIAL,
  coronal: SLICE_TYPE.CORONAL,
  sagittal: SLICE_TYPE.SAGITTAL,
};

const CROSSHAIR_COLOR = [0.2, 0.9, 1.0, 0.9];
const HEAT_COLORMAP = 'hot';
const HEAT_OPACITY = 0.7;

/**
 * NiiVue's label LUT from the API's `labels` ([{value, name, color}]):
 * background (0) transparent, every other label opaque in its colour, so the
 * volume's opacity alone sets how much of the scan shows through.
 */
export function labelColormap(labels) {
  const sorted = [...labels].sort((a, b) => a.value - b.value);
  return {
    R: sorted.map((l) => l.color[0]),
    G: sorted.map((l) => l.color[1]),
    B: sorted.map((l) => l.color[2]),
    A: sorted.map((l) => (l.value === 0 ? 0 : 255)),
    I: sorted.map((l) => l.value),
    labels: sorted.map((l) => l.name),
  };
}

export class Viewer {
  /**
   * @param {HTMLCanvasElement} canvas
   * @param {(loc: {vox: number[], dims: number[], text: string}) => void} onLocation crosshair moved
   */
  constructor(canvas, onLocation = () => {}) {
    this.canvas = canvas;
    this.onLocation = onLocation;
    this.maskOpacity = 0.5;
    this.heat = null; // { name, image }
    // NiiVue asks for its WebGL2 context without preserveDrawingBuffer; asking
    // first fixes the attributes (getContext returns the same context after),
    // so the drawn frame stays readable for screenshots and the browser test.
    canvas.getContext('webgl2', { alpha: true, antialias: false, preserveDrawingBuffer: true });
    this.nv = new Niivue({
      backColor: [0, 0, 0, 1],
      crosshairColor: CROSSHAIR_COLOR,
      crosshairWidth: 1,
      show3Dcrosshair: false,
      isColorbar: false,
      showLegend: false,
      isOrientCube: false,
      multiplanarShowRender: SHOW_RENDER.NEVER,
      multiplanarLayout: MULTIPLANAR_TYPE.AUTO,
      sliceType: SLICE_TYPE.MULTIPLANAR,
      dragAndDropEnabled: false,
      logLevel: 'warn',
      loadingText: 'loading', // NiiVue's font has no ellipsis
    });
    // NiiVue's own readout: position in mm = scan value, label name, heat value.
    this.nv.onLocationChange = (data) => this.#reportLocation(data?.string ?? '');
  }

  async attach() {
    await this.nv.attachToCanvas(this.canvas, false);
  }

  /** Shows `image` with `mask` over it (both `.nii.gz` bytes); `labels` from the case. */
  async open(imageBytes, maskBytes, labels) {
    const image = await NVImage.new(imageBytes, 'image.nii.gz', 'gray');
    const mask = await NVImage.new(maskBytes, 'mask.nii.gz', 'gray', this.maskOpacity);
    mask.setColormapLabel(labelColormap(labels));
    this.nv.addVolume(image);
    this.nv.addVolume(mask);
    this.mask = mask;
    this.nv.createOnLocationChange();
    this.nv.drawScene();
  }

  /** Shows one uncertainty map over the mask (`bytes` null: none). */
  async setHeatmap(name, bytes) {
    if (this.heat) {
      this.nv.removeVolume(this.heat.image);
      this.heat = null;
    }
    if (bytes) {
      const image = await NVImage.new(bytes, `${name}.nii.gz`, HEAT_COLORMAP, HEAT_OPACITY);
      // Below a tenth of the map's robust maximum stays transparent: the scan
      // and mask remain visible where the ensemble agrees.
      image.cal_max = image.robust_max > 0 ? image.robust_max : image.global_max;
      image.cal_min = image.cal_max / 10;
      this.nv.addVolume(image);
      this.heat = { name, image };
    }
    this.nv.updateGLVolume();
    this.nv.createOnLocationChange();
  }

  setMaskOpacity(opacity) {
    this.maskOpacity = opacity;
    if (this.mask) this.nv.setOpacity(this.nv.volumes.indexOf(this.mask), opacity);
  }

  setView(name) {
    this.nv.setSliceType(VIEWS[name] ?? SLICE_TYPE.MULTIPLANAR);
  }

  setCrosshair(visible) {
    this.nv.setCrosshairWidth(visible ? 1 : 0);
  }

  /** Moves the crosshair to voxel `value` along `axis` (0 x, 1 y, 2 z; RAS voxel grid). */
  setSlice(axis, value) {
    const current = this.nv.frac2vox(this.nv.scene.crosshairPos);
    const delta = [0, 0, 0];
    delta[axis] = value - current[axis];
    this.nv.moveCrosshairInVox(...delta);
  }

  /** Voxel counts along x, y, z of the scan (RAS), [] before a scan is open. */
  dims() {
    const vol = this.nv.volumes[0];
    return vol ? vol.dimsRAS.slice(1, 4) : [];
  }

  #reportLocation(text = '') {
    if (!this.nv.volumes.length) return;
    const vox = Array.from(this.nv.frac2vox(this.nv.scene.crosshairPos));
    this.onLocation({ vox, dims: this.dims(), text });
  }

  /** Frees the GL context and listeners (leaving the case page). */
  destroy() {
    this.nv.cleanup();
    this.nv.gl?.getExtension('WEBGL_lose_context')?.loseContext();
  }
}
