"""The `cim` commands for networks as ONNX: import a user's network, export the project's."""

from __future__ import annotations

from pathlib import Path

from cim_spec.config import ConfigError

from .common import add_force, emit, load_data


def cmd_import(args) -> int:
    from cim_flows import onnx_io
    from cim_spec import files
    from golden import model_file
    files.check_output(args.out, {files.MODEL}, args.force, [args.model, args.data])
    imp = onnx_io.read_onnx(args.model)
    net = imp.network
    if (imp.scales is not None or imp.qdq is not None) and not args.recalibrate:
        calib, how = None, {}
    else:
        if args.recalibrate and args.data is None:
            raise ConfigError("--recalibrate needs the calibration data (--data PATH)")
        d = load_data(args)
        images = d.train_images[:args.calib_images]
        if tuple(net.input_shape) not in ((1, *images.shape[1:]), tuple(images.shape[1:])):
            raise ConfigError(f"{args.model}: the network's input {list(net.input_shape)} is "
                              f"not the data's image shape {list(images.shape[1:])}")
        calib = images
        how = {"data": str(args.data) if args.data else "bundled MNIST subset",
               "split": "train", "first": int(len(images))}
    model = onnx_io.to_model(imp, args.model, calib, how)
    model_file.save(model, args.out, net, describe=True)
    layers = [f"{la.name}:{type(la).__name__.lower()}" for la in net.layers]
    cal = model.meta["calibration"]
    emit(args, {"out": str(args.out), "network": net.to_dict(),
                "calibration": model.meta["calibration"]},
         f"wrote {args.out}: network {net.name!r}, {len(net.layers)} layers "
         f"({', '.join(layers)}), {len(net.weight_layers())} weight layers; activation "
         f"scales from {cal.get('from') or cal['data']}")
    return 0


def cmd_export(args) -> int:
    from cim_flows import onnx_io, stages
    from cim_spec import files
    if args.out.suffix != ".onnx":
        raise ConfigError(f"--out {args.out}: an ONNX file's name must end in .onnx")
    files.check_output(args.out, {files.OTHER}, args.force, [args.weights])
    model = stages.load_model(args.weights)
    net = stages.network(model)
    data = onnx_io.to_onnx(net, model.weights, model.biases, model.weight_scales,
                           model.act_scales)
    files.write_bytes(args.out, data)
    emit(args, {"out": str(args.out), "network": net.name, "bytes": len(data)},
         f"wrote {args.out}: network {net.name!r} ({len(data):,} bytes, opset "
         f"{onnx_io.OPSET})")
    return 0


def register(sub) -> None:
    sp = sub.add_parser("import", help="read a CNN from an ONNX file into a model file")
    sp.add_argument("model", type=Path, metavar="MODEL.onnx")
    sp.add_argument("--out", type=Path, required=True, help="the model file (.npz) to write")
    sp.add_argument("--data", type=Path, help="calibration data: MNIST IDX directory or "
                    "mnist.npz (default: the bundled subset); its first training images set "
                    "the activation scales")
    sp.add_argument("--calib-images", type=int, default=5000, dest="calib_images",
                    help="training images to calibrate on (default 5000)")
    sp.add_argument("--recalibrate", action="store_true",
                    help="calibrate even if the file carries scales (a `cim export` file, or "
                    "a quantized QDQ-format file: its Q/DQ scales are then not used)")
    sp.add_argument("--json", action="store_true", help="print one JSON object")
    add_force(sp)
    sp.set_defaults(func=cmd_import)

    sp = sub.add_parser("export", help="write a network and its weights as ONNX")
    sp.add_argument("--weights", type=Path, help="model file (default: the bundled mCNN)")
    sp.add_argument("--out", type=Path, required=True, help="the ONNX file to write")
    sp.add_argument("--json", action="store_true", help="print one JSON object")
    add_force(sp)
    sp.set_defaults(func=cmd_export)
