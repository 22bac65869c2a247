using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics.X86;
using Lutra.Core.Quants;

namespace Lutra.Core.Kernels;

/// <summary>
/// y = W·x for one weight type at one instruction set, in two steps: <see cref="PrepareActivations"/> converts
/// an input vector once (shared by every row, every thread and every projection reading the same input), then
/// <see cref="MatVec"/> multiplies any range of rows with it. The prepared state always begins with the
/// activation row in llama.cpp's format (<see cref="StandardActivationBytes"/>, bit-identical to the
/// reference); fast kernels may append a private sidecar (widened or permuted copies, block sums) after it.
/// </summary>
public abstract unsafe class MatVecKernel
{
    protected MatVecKernel(GgmlType weightType, InstructionSet isa, string name)
    {
        WeightType = weightType;
        ActivationType = QuantReference.ActivationType(weightType);
        Isa = isa;
        Name = name;
    }

    public GgmlType WeightType { get; }

    public GgmlType ActivationType { get; }

    /// <summary>The instruction set this kernel actually uses.</summary>
    public InstructionSet Isa { get; }

    /// <summary>Short description for `bench` and `info --kernels`.</summary>
    public string Name { get; }

    /// <summary>Bytes of the activation row in llama.cpp's format: the first bytes of the prepared state.</summary>
    public int StandardActivationBytes(int n) => QuantReference.ActivationRowBytes(ActivationType, n);

    /// <summary>Bytes of prepared state for an input of <paramref name="n"/> values (a multiple of 64).</summary>
    public virtual int ActivationBytes(int n) => AlignUp(StandardActivationBytes(n));

    /// <summary>Converts <paramref name="n"/> floats into <paramref name="state"/> (64-byte aligned, <see cref="ActivationBytes"/> long).</summary>
    public abstract void PrepareActivations(float* x, int n, byte* state);

    /// <summary>
    /// y[r] = row r · x for <paramref name="rows"/> consecutive rows starting at <paramref name="weights"/>, row r at
    /// r·<paramref name="rowBytes"/>: the GGUF row size, or <see cref="RepackedRowBytes"/> for a repacking kernel.
    /// </summary>
    public abstract void MatVec(byte* weights, long rowBytes, int rows, byte* state, int n, float* y);

    /// <summary>
    /// True when <see cref="MatVec"/> reads weights in a kernel-private layout that <see cref="TryPrepareWeights"/>
    /// writes at load time, instead of the GGUF bytes. Every other kernel reads the GGUF layout directly.
    /// </summary>
    public virtual bool RepacksWeights => false;

    /// <summary>True for the lookup-table kernels (weights as table indices), false for multiply-add ones.</summary>
    public virtual bool UsesLookupTables => false;

    /// <summary>
    /// Rows per weight tile of a repacking kernel: each <see cref="MatVec"/> call must start at a multiple of it
    /// (counted from the matrix's first row) and cover whole tiles, except that the last call may end at the
    /// matrix's last row. 1 for kernels over the GGUF layout.
    /// </summary>
    public virtual int RowTile => 1;

    /// <summary>
    /// Bytes per row of this kernel's layout for GGUF rows of <paramref name="rowBytes"/> bytes and
    /// <paramref name="n"/> columns: the stride <see cref="MatVec"/> and <see cref="MatMat"/> take, so a repacked
    /// matrix is rows times this. The GGUF size unless a kernel converts to a wider format (TQ1_0 into TQ2_0's tiles).
    /// </summary>
    public virtual long RepackedRowBytes(long rowBytes, int n) => rowBytes;

    /// <summary>
    /// Rewrites <paramref name="rows"/> GGUF rows of <paramref name="rowBytes"/> bytes into this kernel's layout at
    /// <paramref name="destination"/> (rows·<see cref="RepackedRowBytes"/> bytes, so row r's tile starts at r times
    /// that). Returns false, leaving
    /// the matrix to a GGUF-layout kernel, when the layout cannot represent these weights. The default, for
    /// kernels that do not repack, does nothing and returns false.
    /// </summary>
    public virtual bool TryPrepareWeights(byte* source, long rowBytes, int rows, int n, byte* destination) => false;

    /// <summary>
    /// y[t·<paramref name="yStride"/> + r] = row r · x_t for <paramref name="rows"/> rows and <paramref name="tokens"/>
    /// prepared inputs (state t at <paramref name="states"/> + t·<paramref name="stateStride"/>). Kernels with a
    /// GEMM micro-kernel decode each weight block once for several tokens; the default runs MatVec per token.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public virtual void MatMat(byte* weights, long rowBytes, int rows, byte* states, int stateStride, int tokens, int n, float* y, long yStride)
    {
        for (var t = 0; t < tokens; t++)
            MatVec(weights, rowBytes, rows, states + (long)t * stateStride, n, y + t * yStride);
    }

    public override string ToString() =>
        $"{QuantTypes.Get(WeightType).Name} x {QuantTypes.Get(ActivationType).Name}: {Name}";

    protected static int AlignUp(int bytes) => (bytes + 63) & ~63;
}

/// <summary>The scalar reference: llama.cpp's activation conversion and one reference dot product per row.</summary>
public sealed unsafe class ReferenceMatVec(GgmlType weightType) : MatVecKernel(weightType, InstructionSet.Scalar, "scalar reference")
{
    public override void PrepareActivations(float* x, int n, byte* state) =>
        QuantReference.QuantizeActivations(ActivationType, new ReadOnlySpan<float>(x, n), new Span<byte>(state, StandardActivationBytes(n)));

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public override void MatVec(byte* weights, long rowBytes, int rows, byte* state, int n, float* y)
    {
        var activations = new ReadOnlySpan<byte>(state, StandardActivationBytes(n));
        for (var r = 0; r < rows; r++)
            y[r] = QuantReference.Dot(WeightType, new ReadOnlySpan<byte>(weights + r * rowBytes, (int)rowBytes), activations, n);
    }
}

/// <summary>A SIMD row dot product (and optionally a SIMD activation converter) over the standard layouts.</summary>
public sealed unsafe class RowDotMatVec : MatVecKernel
{
    private readonly delegate*<float*, byte*, int, void> _quantize;
    private readonly delegate*<byte*, byte*, int, float> _dot;

    internal RowDotMatVec(GgmlType weightType, InstructionSet isa, delegate*<float*, byte*, int, void> quantize,
        delegate*<byte*, byte*, int, float> dot)
        : base(weightType, isa, $"{isa} row dot")
    {
        _quantize = quantize;
        _dot = dot;
    }

    public override void PrepareActivations(float* x, int n, byte* state)
    {
        if (_quantize != null)
            _quantize(x, state, n);
        else
            QuantReference.QuantizeActivations(ActivationType, new ReadOnlySpan<float>(x, n), new Span<byte>(state, StandardActivationBytes(n)));
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public override void MatVec(byte* weights, long rowBytes, int rows, byte* state, int n, float* y)
    {
        for (var r = 0; r < rows; r++)
            y[r] = _dot(weights + r * rowBytes, state, n);
    }
}

/// <summary>The CPU kernel table: which kernel serves each (weight type, instruction set).</summary>
public static unsafe partial class KernelTable
{
    private static readonly System.Collections.Concurrent.ConcurrentDictionary<(GgmlType, InstructionSet), MatVecKernel> Cache = new();

    /// <summary>The kernel for <paramref name="weightType"/> at the process-wide instruction set.</summary>
    public static MatVecKernel Get(GgmlType weightType) => Get(weightType, KernelIsa.Selected);

    /// <summary>
    /// One shared instance per (type, instruction set): matrices of the same type share the kernel, so a
    /// prepared activation state can be shared by every projection that reads the same input.
    /// </summary>
    public static MatVecKernel Get(GgmlType weightType, InstructionSet isa) =>
        Cache.GetOrAdd((weightType, isa), static key => Create(key.Item1, key.Item2));

    private static readonly System.Collections.Concurrent.ConcurrentDictionary<(GgmlType, InstructionSet), MatVecKernel[]> RepackingCache = new();

    /// <summary>
    /// The kernels over load-time repacked layouts for <paramref name="weightType"/> at <paramref name="isa"/>
    /// (lookup-table and row-interleaved kernels), best first; empty when there is none. Each serves only weights
    /// passed through its <see cref="MatVecKernel.TryPrepareWeights"/> and row ranges on its
    /// <see cref="MatVecKernel.RowTile"/>; a matrix every candidate refuses stays with
    /// <see cref="Get(GgmlType, InstructionSet)"/>.
    /// </summary>
    public static IReadOnlyList<MatVecKernel> RepackingKernels(GgmlType weightType, InstructionSet isa) =>
        RepackingEnabled ? RepackingCache.GetOrAdd((weightType, isa), static key => CreateRepacking(key.Item1, key.Item2)) : [];

    /// <summary><c>LUTRA_REPACK=0</c> turns off every kernel that repacks weights (the lookup-table kernels), for A/B runs and tests.</summary>
    public const string RepackVariable = "LUTRA_REPACK";

    private static readonly bool RepackingEnabled = Environment.GetEnvironmentVariable(RepackVariable) != "0";

    private static MatVecKernel[] CreateRepacking(GgmlType weightType, InstructionSet isa)
    {
        var kernels = new List<MatVecKernel>();
        // Untuned loads take the first that accepts a matrix: the order is the measured one on this machine
        // (the interleaved Q4_0, Q4_1 and Q2_K kernels beat the bit-serial tables, interleaved TQ2_0 the 5-trit tables,
        // in decode and prefill).
        AddInterleavedKernels(kernels, weightType, isa);
        AddTernaryLutKernels(kernels, weightType, isa);
        AddBitSerialLutKernels(kernels, weightType, isa);
        // Registration order is also the tuner's order among near ties. TQ1_0 in TQ2_0's interleaved tiles (22 %
        // more bytes) comes before the 5-trit tables: measured in one `bench --synthetic llama-1b:TQ1_0 -p 128 -n 64
        // -t 1,2` run, it decoded 127.5 against 101.6 t/s at one thread and 223 against 179 at two, and its GEMM
        // tiles prefilled 289 against 105 t/s.
        return [.. kernels];
    }

    private static void AddTernaryLutKernels(List<MatVecKernel> kernels, GgmlType weightType, InstructionSet isa)
    {
        if (isa != InstructionSet.Avx512 || !TernaryLutMatVecAvx512.IsSupported)
            return;
        if (weightType == GgmlType.TQ1_0)
            kernels.Add(new TQ1_0LutMatVecAvx512());
        else if (weightType == GgmlType.TQ2_0)
            kernels.Add(new TQ2_0LutMatVecAvx512());
    }

    /// <summary>T-MAC bit-serial lookup-table kernels (Kernels/Lut).</summary>
    static partial void AddBitSerialLutKernels(List<MatVecKernel> kernels, GgmlType weightType, InstructionSet isa);

    /// <summary>Row-interleaved multiply-add kernels (Kernels/Interleaved).</summary>
    static partial void AddInterleavedKernels(List<MatVecKernel> kernels, GgmlType weightType, InstructionSet isa);

    private static MatVecKernel Create(GgmlType weightType, InstructionSet isa)
    {
        switch (weightType, isa)
        {
            case (GgmlType.F32, InstructionSet.Avx512):
                return new FloatMatVecAvx512<F32Avx512>();
            case (GgmlType.F16, InstructionSet.Avx512):
                return new FloatMatVecAvx512<F16Avx512>();
            case (GgmlType.BF16, InstructionSet.Avx512):
                return new FloatMatVecAvx512<BF16Avx512>();
            case (GgmlType.Q8_0, InstructionSet.Avx512):
                return new Q8_0MatVecAvx512();
            case (GgmlType.Q4_0, InstructionSet.Avx512):
                return AvxVnni.IsSupported ? new Q4_0MatVecAvxVnni() : new Q4_0MatVecAvx512();
            case (GgmlType.Q4_1, InstructionSet.Avx512):
                return new Block32MatVecAvx512<Q4_1Avx512>();
            case (GgmlType.Q5_0, InstructionSet.Avx512):
                return new Block32MatVecAvx512<Q5_0Avx512>();
            case (GgmlType.Q5_1, InstructionSet.Avx512):
                return new Block32MatVecAvx512<Q5_1Avx512>();
            case (GgmlType.IQ4_NL, InstructionSet.Avx512):
                return new Block32MatVecAvx512<IQ4_NLAvx512>();
            case (GgmlType.Q4_0, InstructionSet.Avx2):
                return new Block32MatVecAvx2<Q4_0Avx2>();
            case (GgmlType.Q4_1, InstructionSet.Avx2):
                return new Block32MatVecAvx2<Q4_1Avx2>();
            case (GgmlType.Q5_0, InstructionSet.Avx2):
                return new Block32MatVecAvx2<Q5_0Avx2>();
            case (GgmlType.Q5_1, InstructionSet.Avx2):
                return new Block32MatVecAvx2<Q5_1Avx2>();
            case (GgmlType.Q8_0, InstructionSet.Avx2):
                return new Block32MatVecAvx2<Q8_0Avx2>();
            case (GgmlType.IQ4_NL, InstructionSet.Avx2):
                return new Block32MatVecAvx2<IQ4_NLAvx2>();
            case (GgmlType.Q2_K, InstructionSet.Avx512):
                return new SuperBlockMatVecAvx512<Q2_KAvx512>();
            case (GgmlType.Q3_K, InstructionSet.Avx512):
                return new SuperBlockMatVecAvx512<Q3_KAvx512>();
            case (GgmlType.Q4_K, InstructionSet.Avx512):
                return new SuperBlockMatVecAvx512<Q4_KAvx512>();
            case (GgmlType.Q5_K, InstructionSet.Avx512):
                return new SuperBlockMatVecAvx512<Q5_KAvx512>();
            case (GgmlType.Q6_K, InstructionSet.Avx512):
                return new SuperBlockMatVecAvx512<Q6_KAvx512>();
            case (GgmlType.IQ4_XS, InstructionSet.Avx512):
                return new SuperBlockMatVecAvx512<IQ4_XSAvx512>();
            case (GgmlType.Q2_K, InstructionSet.Avx2):
                return new SuperBlockStepMatVecAvx2<Q2_KStepAvx2>();
            case (GgmlType.Q3_K, InstructionSet.Avx2):
                return new SuperBlockStepMatVecAvx2<Q3_KStepAvx2>();
            case (GgmlType.Q4_K, InstructionSet.Avx2):
                return new SuperBlockStepMatVecAvx2<Q4_KStepAvx2>();
            case (GgmlType.Q5_K, InstructionSet.Avx2):
                return new SuperBlockStepMatVecAvx2<Q5_KStepAvx2>();
            case (GgmlType.Q6_K, InstructionSet.Avx2):
                return new SuperBlockStepMatVecAvx2<Q6_KStepAvx2>();
            case (GgmlType.IQ4_XS, InstructionSet.Avx2):
                return new SuperBlockStepMatVecAvx2<IQ4_XSStepAvx2>();
            case (GgmlType.TQ1_0, InstructionSet.Avx2):
                return new SuperBlockMatVecAvx2<TQ1_0Avx2>();
            case (GgmlType.TQ2_0, InstructionSet.Avx2):
                return new SuperBlockMatVecAvx2<TQ2_0Avx2>();
            case (GgmlType.Q2_K, InstructionSet.Vector128):
                return new SuperBlockMatVecVector128<Q2_KVector128>();
            case (GgmlType.Q3_K, InstructionSet.Vector128):
                return new SuperBlockMatVecVector128<Q3_KVector128>();
            case (GgmlType.Q4_K, InstructionSet.Vector128):
                return new SuperBlockMatVecVector128<Q4_KVector128>();
            case (GgmlType.Q5_K, InstructionSet.Vector128):
                return new SuperBlockMatVecVector128<Q5_KVector128>();
            case (GgmlType.Q6_K, InstructionSet.Vector128):
                return new SuperBlockMatVecVector128<Q6_KVector128>();
            case (GgmlType.IQ4_XS, InstructionSet.Vector128):
                return new SuperBlockMatVecVector128<IQ4_XSVector128>();
            case (GgmlType.TQ1_0, InstructionSet.Vector128):
                return new SuperBlockMatVecVector128<TQ1_0Vector128>();
            case (GgmlType.TQ2_0, InstructionSet.Vector128):
                return new SuperBlockMatVecVector128<TQ2_0Vector128>();
            case (GgmlType.Q4_0, InstructionSet.Vector128):
                return new Block32MatVecVector128<Q4_0Vector128>();
            case (GgmlType.Q4_1, InstructionSet.Vector128):
                return new Block32MatVecVector128<Q4_1Vector128>();
            case (GgmlType.Q5_0, InstructionSet.Vector128):
                return new Block32MatVecVector128<Q5_0Vector128>();
            case (GgmlType.Q5_1, InstructionSet.Vector128):
                return new Block32MatVecVector128<Q5_1Vector128>();
            case (GgmlType.Q8_0, InstructionSet.Vector128):
                return new Block32MatVecVector128<Q8_0Vector128>();
            case (GgmlType.IQ4_NL, InstructionSet.Vector128):
                return new Block32MatVecVector128<IQ4_NLVector128>();
        }
        var activation = QuantReference.ActivationType(weightType);
        delegate*<float*, byte*, int, void> quantize = activation switch
        {
            GgmlType.Q8_0 when isa >= InstructionSet.Avx512 => &Q8_0Kernels.QuantizeRowAvx512,
            GgmlType.Q8_0 when isa >= InstructionSet.Vector128 => &Q8_0Kernels.QuantizeRowVector128,
            GgmlType.Q8_K when isa >= InstructionSet.Avx512 => &Q8_KKernels.QuantizeRowAvx512,
            _ => null,
        };
        delegate*<byte*, byte*, int, float> dot = (weightType, isa) switch
        {
            (GgmlType.TQ1_0, InstructionSet.Avx512) => &Q8_KKernels.DotTQ1_0Avx512,
            (GgmlType.TQ2_0, InstructionSet.Avx512) => &Q8_KKernels.DotTQ2_0Avx512,
            (GgmlType.F32, InstructionSet.Avx2) => &FloatKernelsAvx2.DotF32,
            (GgmlType.F16, InstructionSet.Avx2) => &FloatKernelsAvx2.DotF16,
            (GgmlType.BF16, InstructionSet.Avx2) => &FloatKernelsAvx2.DotBF16,
            (GgmlType.F32, InstructionSet.Vector128) => &FloatKernelsVector128.DotF32,
            (GgmlType.F16, InstructionSet.Vector128) => &FloatKernelsVector128.DotF16,
            (GgmlType.BF16, InstructionSet.Vector128) => &FloatKernelsVector128.DotBF16,
            _ => null,
        };
        if (dot == null)
            return new ReferenceMatVec(weightType);
        return new RowDotMatVec(weightType, isa, quantize, dot);
    }
}
