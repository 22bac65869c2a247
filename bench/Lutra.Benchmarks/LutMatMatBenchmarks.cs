using System.Runtime.InteropServices;
using BenchmarkDotNet.Attributes;
using Lutra.Core.Kernels;
using Lutra.Core.Quants;

namespace Lutra.Benchmarks;

/// <summary>
/// The lookup-table kernels' MatMat over <see cref="Tokens"/> inputs against the same kernel's MatVec run once per
/// input, on one 8192×2048 matrix (an FFN projection of a 1B model) walked in row tiles as the prefill matmul walks
/// it: the weight tile stays in L2 across the tokens either way, so the difference is what batching shares inside
/// the kernel (index loads, nibble splits, scale conversions).
/// </summary>
public unsafe class LutMatMatBenchmarks
{
    private const int Rows = 8192;
    private const int Columns = 2048;

    public static IEnumerable<GgmlType> Types => [GgmlType.TQ1_0, GgmlType.TQ2_0, GgmlType.Q4_0, GgmlType.Q4_1, GgmlType.Q2_K];

    [ParamsSource(nameof(Types))]
    public GgmlType Type { get; set; }

    [Params(2, 4, 8)]
    public int Tokens { get; set; }

    private MatVecKernel _kernel = null!;
    private byte* _weights;
    private byte* _states;
    private int _stride;
    private float* _y;
    private long _rowBytes;
    private int _tile;

    [GlobalSetup]
    public void Setup()
    {
        _kernel = KernelTable.RepackingKernels(Type, InstructionSet.Avx512).FirstOrDefault(k => k.Name.Contains("LUT", StringComparison.Ordinal))
            ?? throw new NotSupportedException($"no AVX-512 lookup-table kernel for {Type} on this machine");
        _rowBytes = QuantTypes.Get(Type).RowBytes(Columns);
        _tile = Math.Max(16, _kernel.RowTile);
        var gguf = BenchData.RandomMatrix(Type, Columns, Rows);
        _weights = (byte*)NativeMemory.AlignedAlloc((nuint)(Rows * _rowBytes), 64);
        var accepted = _kernel.TryPrepareWeights(gguf, _rowBytes, Rows, Columns, _weights);
        NativeMemory.AlignedFree(gguf);
        if (!accepted)
            throw new InvalidOperationException($"{_kernel} refused the benchmark matrix");
        _stride = _kernel.ActivationBytes(Columns);
        _states = (byte*)NativeMemory.AlignedAlloc((nuint)((long)_stride * Tokens), 64);
        _y = (float*)NativeMemory.AlignedAlloc((nuint)((long)Rows * Tokens * sizeof(float)), 64);
        for (var t = 0; t < Tokens; t++)
        {
            var x = BenchData.RandomVector(Columns, seed: 1 + t);
            fixed (float* px = x)
                _kernel.PrepareActivations(px, Columns, _states + (long)t * _stride);
        }
    }

    [Benchmark(Baseline = true)]
    public void MatVecPerToken()
    {
        for (var r = 0; r < Rows; r += _tile)
            for (var t = 0; t < Tokens; t++)
                _kernel.MatVec(_weights + r * _rowBytes, _rowBytes, _tile, _states + (long)t * _stride, Columns, _y + (long)t * Rows + r);
    }

    [Benchmark]
    public void MatMat()
    {
        for (var r = 0; r < Rows; r += _tile)
            _kernel.MatMat(_weights + r * _rowBytes, _rowBytes, _tile, _states, _stride, Tokens, Columns, _y + r, Rows);
    }

    [GlobalCleanup]
    public void Cleanup()
    {
        NativeMemory.AlignedFree(_weights);
        NativeMemory.AlignedFree(_states);
        NativeMemory.AlignedFree(_y);
    }
}
