using System.Diagnostics;
using System.Globalization;
using System.Runtime.InteropServices;
using Lutra.Core.Diagnostics;
using Lutra.Core.Kernels;
using Lutra.Core.Quants;
using Lutra.Core.Tensors;
using Lutra.Core.Threading;

namespace Lutra.Cli.Commands;

/// <summary>
/// `lutra bench --kernels`: one GEMV per weight type and instruction set over a matrix far larger than the
/// caches, reported as weight GB/s and as a share of the read bandwidth probed in the same process. This is
/// the tight loop for kernel work (BenchmarkDotNet in bench/ gives the careful numbers).
/// </summary>
internal static unsafe class KernelBench
{
    private const int Columns = 4096;
    private const long MatrixBytes = 256L << 20;

    public static int Run(IReadOnlyList<GgmlType> types, IReadOnlyList<InstructionSet> isas, int repetitions)
    {
        double probe;
        using (var pool = new ComputePool(1))
            probe = BandwidthProbe.MeasureReadGBps(pool);
        Console.Out.WriteLine(string.Create(CultureInfo.InvariantCulture, $"read bandwidth probe, 1 thread: {probe:F1} GB/s; GEMV of {MatrixBytes >> 20} MiB, {Columns} columns, median of {repetitions}"));
        Console.Out.WriteLine($"| type | {string.Join(" | ", isas)} | repacked layouts |");
        Console.Out.WriteLine($"| --- |{string.Concat(isas.Select(_ => " ---: |"))} ---: |");
        foreach (var type in types)
        {
            var info = QuantTypes.Get(type);
            var rowBytes = info.RowBytes(Columns);
            var rows = (int)(MatrixBytes / rowBytes);
            var weights = (byte*)NativeMemory.AlignedAlloc((nuint)(rowBytes * rows), 64);
            try
            {
                FillWeights(type, weights, rowBytes, rows);
                var cells = isas.Select(isa => Measure(KernelTable.Get(type, isa), weights, rowBytes, rowBytes * rows, rows, repetitions, probe)).ToList();
                cells.Add(MeasureRepacked(type, weights, rowBytes, rows, repetitions, probe));
                Console.Out.WriteLine($"| {info.Name} | {string.Join(" | ", cells)} |");
            }
            finally
            {
                NativeMemory.AlignedFree(weights);
            }
        }
        return 0;
    }

    /// <summary>The kernels with a private weight layout (lookup tables, interleaved rows) that serve this type here.</summary>
    private static string MeasureRepacked(GgmlType type, byte* weights, long rowBytes, int rows, int repetitions, double probe)
    {
        var cells = new List<string>();
        foreach (var kernel in KernelTable.RepackingKernels(type, KernelIsa.Selected))
        {
            // GB/s counts the GGUF bytes, as for every other cell of the row; a layout wider than them says so.
            var stride = kernel.RepackedRowBytes(rowBytes, Columns);
            using var packed = NativeBuffer.ForStreaming(stride * rows);
            var wider = stride == rowBytes ? "" : string.Create(CultureInfo.InvariantCulture, $", streaming {(double)stride / rowBytes:F2}x those bytes");
            cells.Add(kernel.TryPrepareWeights(weights, rowBytes, rows, Columns, packed.Pointer)
                ? $"{kernel.Name}: {Measure(kernel, packed.Pointer, stride, rowBytes * rows, rows, repetitions, probe)}{wider}"
                : $"{kernel.Name}: not representable");
        }
        return cells.Count == 0 ? "–" : string.Join("; ", cells);
    }

    private static void FillWeights(GgmlType type, byte* weights, long rowBytes, int rows)
    {
        // A few distinct quantized rows repeated: realistic codes and scales, built in milliseconds.
        var rng = new Random(7);
        var x = new float[Columns];
        var distinct = new byte[8][];
        for (var d = 0; d < distinct.Length; d++)
        {
            for (var i = 0; i < x.Length; i++)
                x[i] = (float)(rng.NextDouble() - 0.5);
            distinct[d] = new byte[rowBytes];
            QuantReference.Quantize(type, x, distinct[d]);
        }
        for (long r = 0; r < rows; r++)
            distinct[r % distinct.Length].CopyTo(new Span<byte>(weights + r * rowBytes, (int)rowBytes));
    }

    /// <summary>Median GB/s of <paramref name="bytes"/> per MatVec over <paramref name="rows"/> rows of <paramref name="rowBytes"/> (the kernel's stride).</summary>
    private static string Measure(MatVecKernel kernel, byte* weights, long rowBytes, long bytes, int rows, int repetitions, double probe)
    {
        var x = new float[Columns];
        var rng = new Random(3);
        for (var i = 0; i < x.Length; i++)
            x[i] = (float)(rng.NextDouble() - 0.5);
        var state = (byte*)NativeMemory.AlignedAlloc((nuint)kernel.ActivationBytes(Columns), 64);
        var y = (float*)NativeMemory.AlignedAlloc((nuint)rows * sizeof(float), 64);
        try
        {
            fixed (float* px = x)
                kernel.PrepareActivations(px, Columns, state);
            // Enough untimed runs for tiered compilation to reach its final code, then the timed ones.
            for (var i = 0; i < 40; i++)
                kernel.MatVec(weights, rowBytes, Math.Min(rows, 256), state, Columns, y);
            kernel.MatVec(weights, rowBytes, rows, state, Columns, y);
            var seconds = new double[repetitions];
            for (var r = 0; r < repetitions; r++)
            {
                var sw = Stopwatch.StartNew();
                kernel.MatVec(weights, rowBytes, rows, state, Columns, y);
                seconds[r] = sw.Elapsed.TotalSeconds;
            }
            Array.Sort(seconds);
            var gbps = bytes / seconds[repetitions / 2] / 1e9;
            return string.Create(CultureInfo.InvariantCulture, $"{gbps:F1} GB/s ({100 * gbps / probe:F0} %)");
        }
        finally
        {
            NativeMemory.AlignedFree(state);
            NativeMemory.AlignedFree(y);
        }
    }
}
