using System.Runtime.InteropServices;
using BenchmarkDotNet.Attributes;
using Lutra.Core.Kernels;
using Lutra.Core.Quants;

namespace Lutra.Benchmarks;

/// <summary>
/// One thread, y = W·x over a ~256 MB weight matrix (far larger than any cache), so the time measures how fast a
/// kernel streams weights from memory. Decode should reach ≥ 80 % of the machine's single-thread bandwidth.
/// </summary>
public unsafe class GemvBenchmarks
{
    public const int Columns = 4096;
    private const long TargetBytes = 256L << 20;

    public static IEnumerable<GgmlType> Types =>
    [
        GgmlType.F32, GgmlType.F16, GgmlType.BF16, GgmlType.Q4_0, GgmlType.Q4_1, GgmlType.Q5_0, GgmlType.Q5_1, GgmlType.Q8_0,
        GgmlType.Q2_K, GgmlType.Q3_K, GgmlType.Q4_K, GgmlType.Q5_K, GgmlType.Q6_K, GgmlType.IQ4_NL, GgmlType.IQ4_XS,
        GgmlType.TQ1_0, GgmlType.TQ2_0,
    ];

    /// <summary>The SIMD instruction sets this machine runs (the scalar reference would take seconds per call).</summary>
    public static IEnumerable<InstructionSet> Isas => KernelIsa.Supported.Where(isa => isa != InstructionSet.Scalar);

    [ParamsSource(nameof(Types))]
    public GgmlType Type { get; set; }

    [ParamsSource(nameof(Isas))]
    public InstructionSet Isa { get; set; }

    private MatVecKernel _kernel = null!;
    private byte* _weights;
    private byte* _state;
    private float* _y;
    private long _rowBytes;
    private int _rows;

    /// <summary>Rows of the benchmark matrix for a type: as many as fit in ~256 MB.</summary>
    public static int Rows(GgmlType type) => (int)(TargetBytes / QuantTypes.Get(type).RowBytes(Columns));

    public static long WeightBytes(GgmlType type) => Rows(type) * QuantTypes.Get(type).RowBytes(Columns);

    [GlobalSetup]
    public void Setup()
    {
        _kernel = KernelTable.Get(Type, Isa);
        _rowBytes = QuantTypes.Get(Type).RowBytes(Columns);
        _rows = Rows(Type);
        _weights = BenchData.RandomMatrix(Type, Columns, _rows);
        _state = (byte*)NativeMemory.AlignedAlloc((nuint)_kernel.ActivationBytes(Columns), 64);
        _y = (float*)NativeMemory.AlignedAlloc((nuint)(_rows * sizeof(float)), 64);
        var x = BenchData.RandomVector(Columns, seed: 1);
        fixed (float* px = x)
            _kernel.PrepareActivations(px, Columns, _state);
    }

    [Benchmark]
    public void MatVec() => _kernel.MatVec(_weights, _rowBytes, _rows, _state, Columns, _y);

    [GlobalCleanup]
    public void Cleanup()
    {
        NativeMemory.AlignedFree(_weights);
        NativeMemory.AlignedFree(_state);
        NativeMemory.AlignedFree(_y);
    }
}

/// <summary>
/// The batched case (prompt processing, several sequences): <see cref="Inputs"/> input vectors against the same
/// ~256 MB matrix, walked in tiles of rows small enough to stay in L2 while every input passes over them, so
/// the weights stream from memory once per batch. GB/s counts the matrix once per call.
/// </summary>
public unsafe class BatchedGemmBenchmarks
{
    private const int TileRows = 64;

    [ParamsSource(nameof(Types))]
    public GgmlType Type { get; set; }

    [ParamsSource(nameof(Isas))]
    public InstructionSet Isa { get; set; }

    [Params(8)]
    public int Inputs { get; set; }

    public static IEnumerable<GgmlType> Types => [GgmlType.Q8_0, GgmlType.Q4_0, GgmlType.Q4_K, GgmlType.Q6_K, GgmlType.F16];

    public static IEnumerable<InstructionSet> Isas => GemvBenchmarks.Isas;

    private MatVecKernel _kernel = null!;
    private byte* _weights;
    private byte*[] _states = [];
    private float* _y;
    private long _rowBytes;
    private int _rows;

    [GlobalSetup]
    public void Setup()
    {
        _kernel = KernelTable.Get(Type, Isa);
        _rowBytes = QuantTypes.Get(Type).RowBytes(GemvBenchmarks.Columns);
        _rows = GemvBenchmarks.Rows(Type);
        _weights = BenchData.RandomMatrix(Type, GemvBenchmarks.Columns, _rows);
        _states = new byte*[Inputs];
        _y = (float*)NativeMemory.AlignedAlloc((nuint)((long)_rows * Inputs * sizeof(float)), 64);
        for (var i = 0; i < Inputs; i++)
        {
            _states[i] = (byte*)NativeMemory.AlignedAlloc((nuint)_kernel.ActivationBytes(GemvBenchmarks.Columns), 64);
            var x = BenchData.RandomVector(GemvBenchmarks.Columns, seed: 1 + i);
            fixed (float* px = x)
                _kernel.PrepareActivations(px, GemvBenchmarks.Columns, _states[i]);
        }
    }

    [Benchmark]
    public void MatMul()
    {
        for (var r = 0; r < _rows; r += TileRows)
        {
            var rows = Math.Min(TileRows, _rows - r);
            for (var i = 0; i < Inputs; i++)
                _kernel.MatVec(_weights + r * _rowBytes, _rowBytes, rows, _states[i], GemvBenchmarks.Columns, _y + (long)i * _rows + r);
        }
    }

    [GlobalCleanup]
    public void Cleanup()
    {
        NativeMemory.AlignedFree(_weights);
        foreach (var state in _states)
            NativeMemory.AlignedFree(state);
        NativeMemory.AlignedFree(_y);
    }
}

/// <summary>Benchmark inputs: realistic value distributions, quantized by the reference quantizers.</summary>
internal static unsafe class BenchData
{
    public static float[] RandomVector(int n, int seed)
    {
        var rng = new Random(seed);
        var x = new float[n];
        for (var i = 0; i < n; i++)
            x[i] = (float)(rng.NextDouble() * 2 - 1);
        return x;
    }

    /// <summary>
    /// A 64-byte aligned matrix of <paramref name="rows"/> rows: 64 distinct quantized rows repeated (quantizing
    /// 256 MB with the reference K-quant searches would take minutes; the content does not change the speed).
    /// </summary>
    public static byte* RandomMatrix(GgmlType type, int columns, int rows)
    {
        const int distinct = 64;
        var rowBytes = QuantTypes.Get(type).RowBytes(columns);
        var sample = new byte[rowBytes * distinct];
        for (var r = 0; r < distinct; r++)
            QuantReference.Quantize(type, RandomVector(columns, seed: 100 + r), sample.AsSpan((int)(r * rowBytes), (int)rowBytes));
        var matrix = (byte*)NativeMemory.AlignedAlloc((nuint)(rows * rowBytes), 64);
        for (var r = 0; r < rows; r++)
            sample.AsSpan((int)(r % distinct * rowBytes), (int)rowBytes).CopyTo(new Span<byte>(matrix + r * rowBytes, (int)rowBytes));
        return matrix;
    }
}
