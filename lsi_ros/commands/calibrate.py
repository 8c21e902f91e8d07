"""``lsi calibrate``: dark level, read noise, gain, ambient light, photon flux and the scene's placement
on the DMD grid, from bench captures -> a calibration JSON and a photon-transfer figure."""

from dataclasses import replace
from pathlib import Path

# Electrons per lit sampling pixel at 32²: the default 200 at 256² gathers 64 times more mirrors per
# pixel (12,800); the flat-field panel is 25 % brighter than that, so the fullest patterns clip the ADC
# and the photon-transfer curve shows its saturation point.
SIM_PHOTON_FLUX = 16000.0


def add_parser(subparsers):
    parser = subparsers.add_parser(
        "calibrate",
        help="calibrate the detector (dark level, read noise, gain, ambient) and the scene's registration",
        description="Acquires four series of captures (DMD all-off with the objective covered; all-off with "
        "a flat field; a flat field through patterns of increasing fill factor, for an EMVA 1288 "
        "photon-transfer curve; a registration target through the complete Hadamard basis), estimates "
        "the detector parameters with standard errors, and writes them as JSON for "
        "photodiode_sampler's `calibration` parameter. With the default `sim` backend the camera is "
        "simulated with the --true-* parameters and the recovered values are printed next to them. "
        "--captures reads a recorded session instead (.npz or .safetensors, as --save-captures writes).",
    )
    parser.add_argument("--backend", default="sim", choices=("sim",), help="projector + detector backend")
    parser.add_argument("--captures", default="", help="recorded captures to calibrate from (no acquisition)")
    parser.add_argument("--save-captures", default="", help="also write the acquired captures here")
    parser.add_argument(
        "--output", default="runs/calibration/detector_calibration.json", help="calibration JSON to write"
    )
    parser.add_argument(
        "--figure", default="docs/results/calibration_ptc.png", help="photon-transfer figure ('' for none)"
    )
    plan = parser.add_argument_group("capture plan")
    plan.add_argument("--resolution", type=int, default=32, help="sampling grid (power of 2; default 32)")
    plan.add_argument("--frames", type=int, default=200, help="frames per pattern set (default 200)")
    plan.add_argument(
        "--levels", type=int, default=20, help="photon-transfer fill-factor levels (default 20)"
    )
    plan.add_argument("--patterns-per-level", type=int, default=32, help="patterns per level (default 32)")
    plan.add_argument(
        "--flat-field", type=float, default=1.0, help="scene value of the flat field (white: 1)"
    )
    plan.add_argument("--seed", type=int, default=0, help="seed of the patterns and of the simulated noise")
    truth = parser.add_argument_group("sim: the true camera to recover")
    model = "(default: PhotodiodeModel's)"
    truth.add_argument("--true-dark-level", type=float, help=f"counts {model}")
    truth.add_argument("--true-read-noise", type=float, help=f"electrons rms {model}")
    truth.add_argument("--true-gain", type=float, help=f"counts per electron {model}")
    truth.add_argument("--true-ambient", type=float, help=f"electrons per pattern {model}")
    truth.add_argument(
        "--true-photon-flux", type=float, default=SIM_PHOTON_FLUX, help="electrons per lit sampling pixel"
    )
    truth.add_argument("--true-adc-bits", type=int, default=16)
    truth.add_argument(
        "--true-shift",
        type=float,
        nargs=2,
        default=(1.5, -2.25),
        metavar=("ROWS", "COLS"),
        help="target offset on the DMD grid, sampling pixels",
    )
    truth.add_argument("--true-scale", type=float, default=1.05, help="target magnification on the DMD grid")
    parser.set_defaults(func=main)


def true_model(args):
    """The simulated camera: the photodiode model's defaults, with the --true-* values given."""
    from lsi_ros.optics.photodiode import PhotodiodeModel

    given = {
        "dark_level": args.true_dark_level,
        "read_noise": args.true_read_noise,
        "conversion_gain": args.true_gain,
        "ambient": args.true_ambient,
        "photon_flux": args.true_photon_flux,
        "adc_bits": args.true_adc_bits,
    }
    return replace(PhotodiodeModel(), **{name: v for name, v in given.items() if v is not None})


def main(args) -> int:
    from lsi_ros.hardware.calibration_bench import CapturePlan, SimulatedBench
    from lsi_ros.optics.calibration import CalibrationCaptures, CalibrationError, calibrate

    truth = None
    try:
        if args.captures:
            captures = CalibrationCaptures.load(args.captures)
        else:
            plan = CapturePlan(
                resolution=args.resolution,
                frames=args.frames,
                levels=args.levels,
                patterns_per_level=args.patterns_per_level,
                flat_field=args.flat_field,
                seed=args.seed,
            )
            model = true_model(args)
            bench = SimulatedBench(model, plan, tuple(args.true_shift), args.true_scale, seed=args.seed)
            captures = bench.acquire()
            truth = {
                "dark_level": model.dark_level,
                "read_noise": model.read_noise,
                "gain": model.conversion_gain,
                "ambient": model.ambient,
                "photon_flux": model.photon_flux * args.flat_field,
                "full_scale": model.full_scale,
                "shift_rows": args.true_shift[0],
                "shift_cols": args.true_shift[1],
                "scale": args.true_scale,
            }
        if args.save_captures:
            print(f"wrote captures {captures.save(args.save_captures)}")
        result = calibrate(captures)
    except CalibrationError as error:
        print(f"lsi calibrate: {error}")
        return 2
    calibration = result.calibration
    calibration.save(args.output)
    if args.figure:
        plot_calibration(result, args.figure)
    print(table(calibration, truth))
    print(f"wrote {args.output}" + (f", {args.figure}" if args.figure else ""))
    return 0


UNITS = {
    "dark_level": "counts",
    "read_noise": "e- rms",
    "gain": "counts/e-",
    "ambient": "e-/pattern",
    "photon_flux": "e-/unit y",
    "full_scale": "counts",
    "shift_rows": "pixels",
    "shift_cols": "pixels",
    "scale": "",
}


def table(calibration, truth: dict | None) -> str:
    """Recovered values (± standard error) and, in simulation, the truth and the error in standard errors."""
    recovered = {
        name: getattr(calibration, name)
        for name in ("dark_level", "read_noise", "gain", "ambient", "photon_flux", "full_scale", "scale")
    }
    recovered |= {"shift_rows": calibration.shift[0], "shift_cols": calibration.shift[1]}
    header = f"{'parameter':12s} {'unit':11s} {'recovered':>22s}"
    header += f" {'true':>11s} {'error':>8s} {'in SE':>6s}" if truth else ""
    lines = [header, "-" * len(header)]
    for name in UNITS:
        value = recovered[name]
        se = calibration.uncertainties.get(name)
        text = f"{value:.5g}" + (f" ± {se:.2g}" if se is not None else "")
        line = f"{name:12s} {UNITS[name]:11s} {text:>22s}"
        if truth:
            error = value - truth[name]
            relative = f"{100 * error / truth[name]:+.2f}%" if truth[name] else f"{error:+.3f}"
            line += f" {truth[name]:11.5g} {relative:>8s}" + (f" {error / se:+6.2f}" if se else "")
        lines.append(line)
    lines.append(
        f"full well {calibration.full_well:.4g} e-" if calibration.full_well else "no saturation reached"
    )
    lines[-1] += f"; linearity error {calibration.linearity_error:.3f} % (EMVA 1288, 5-95 % of saturation)"
    return "\n".join(lines)


def plot_calibration(result, path) -> None:
    """Photon transfer (variance vs mean), linearity (mean vs light) and the registered target."""
    import matplotlib
    import numpy as np

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from lsi_ros.optics.calibration import registration_target

    ptc, calibration = result.ptc, result.calibration
    fig, (ax_ptc, ax_lin, ax_reg) = plt.subplots(1, 3, figsize=(15, 4.6), layout="constrained")
    used, rest = ptc.used, ~ptc.used
    ax_ptc.errorbar(
        ptc.mean[used], ptc.variance[used], ptc.variance_se[used], fmt="o", label="in the gain fit"
    )
    ax_ptc.errorbar(
        ptc.mean[rest], ptc.variance[rest], ptc.variance_se[rest], fmt="s", mfc="none", label="not fitted"
    )
    xs = np.linspace(0, ptc.mean.max(), 100)
    ax_ptc.plot(
        xs, ptc.gain * xs + ptc.intercept, "k--", lw=1, label=f"slope = gain = {ptc.gain:.4g} counts/e-"
    )
    if ptc.saturation_level is not None:
        s = ptc.saturation_level
        ax_ptc.plot(ptc.mean[s], ptc.variance[s], "r*", ms=14, label="saturation point (max variance)")
    ax_ptc.set_xlabel("mean signal − dark level (counts)")
    ax_ptc.set_ylabel("temporal variance − dark variance (counts²)")
    ax_ptc.set_title("photon transfer (EMVA 1288)")
    ax_ptc.legend(fontsize=8)
    ax_ptc.grid(alpha=0.3)
    clipped = ptc.clipped_fraction > 0
    for mask, style, label in (
        (~clipped, "o", "unclipped levels"),
        (clipped, "x", "levels with clipped samples"),
    ):
        if mask.any():
            ax_lin.plot(ptc.light[mask].ravel(), ptc.pattern_mean[mask].ravel(), style, ms=3, label=label)
    ys = np.linspace(0, ptc.light.max(), 100)
    ax_lin.plot(ys, ptc.signal_slope * ys + ptc.signal_intercept, "k--", lw=1, label="linear fit")
    ax_lin.set_xlabel("ideal measurement y of the pattern on the flat field")
    ax_lin.set_ylabel("mean signal − dark level (counts)")
    ax_lin.set_title(f"linearity: error {calibration.linearity_error:.3f} % of range")
    ax_lin.legend(fontsize=8)
    ax_lin.grid(alpha=0.3)
    image = result.target_image
    n = image.shape[0]
    ax_reg.imshow(image, cmap="gray")
    fitted = registration_target(n, calibration.shift, calibration.scale)
    ax_reg.contour(fitted, levels=[0.5], colors="r", linewidths=0.8)
    ax_reg.contour(registration_target(n), levels=[0.5], colors="c", linewidths=0.8, linestyles="dotted")
    ax_reg.set_title(
        f"target, {n}² Hadamard: shift ({calibration.shift[0]:+.2f}, {calibration.shift[1]:+.2f}) px, "
        f"scale {calibration.scale:.3f}\nred: registered, dotted: expected at (0, 0), 1.0",
        fontsize=9,
    )
    ax_reg.axis("off")
    fig.suptitle(f"detector calibration ({calibration.source or 'captures'})")
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
