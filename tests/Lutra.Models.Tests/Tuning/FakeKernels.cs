using Lutra.Core.Kernels;
using Lutra.Core.Quants;
using Lutra.Core.Tensors;
using Lutra.Models.Tuning;

namespace Lutra.Models.Tests.Tuning;

/// <summary>
/// A stand-in kernel over f32 weights. A repacking one copies the weights, refusing matrices whose first weight
/// <see cref="Refuses"/> names, so a test can tell which matrices a candidate accepts.
/// </summary>
internal sealed unsafe class FakeKernel(string name, bool repacks, GgmlType type = GgmlType.F32) : MatVecKernel(type, InstructionSet.Scalar, name)
{
    public bool LookupTables { get; init; }

    public override bool UsesLookupTables => LookupTables;

    public Func<float, bool> Refuses { get; init; } = _ => false;

    public override bool RepacksWeights => repacks;

    private int _preparations;
    private int _products;

    /// <summary>Calls of <see cref="PrepareActivations"/> so far.</summary>
    public int Preparations => _preparations;

    /// <summary>Calls of <see cref="MatVec"/> so far.</summary>
    public int Products => _products;

    public override void PrepareActivations(float* x, int n, byte* state)
    {
        Interlocked.Increment(ref _preparations);
        Buffer.MemoryCopy(x, state, n * 4L, n * 4L);
    }

    public override void MatVec(byte* weights, long rowBytes, int rows, byte* state, int n, float* y)
    {
        Interlocked.Increment(ref _products);
        for (var r = 0; r < rows; r++)
        {
            var row = (float*)(weights + r * rowBytes);
            var sum = 0f;
            for (var i = 0; i < n; i++)
                sum += row[i] * ((float*)state)[i];
            y[r] = sum;
        }
    }

    public override bool TryPrepareWeights(byte* source, long rowBytes, int rows, int n, byte* destination)
    {
        if (!repacks || Refuses(*(float*)source))
            return false;
        Buffer.MemoryCopy(source, destination, rows * rowBytes, rows * rowBytes);
        return true;
    }
}

/// <summary>
/// Answers a fixed decode time per kernel name and records every measurement asked for. A prompt batch of n tokens
/// takes n decode times unless <see cref="PromptSeconds"/> names the kernel (its time per token of a batch).
/// </summary>
internal sealed unsafe class FakeTimer(params (string Kernel, double Seconds)[] times) : ICandidateTimer
{
    public List<(string Matrix, string Kernel, int Tokens)> Calls { get; } = [];

    /// <summary>Rows of the matrix each measurement of <see cref="Calls"/> was asked on.</summary>
    public List<int> MatrixRows { get; } = [];

    /// <summary>The single-token measurements.</summary>
    public IEnumerable<(string Matrix, string Kernel, int Tokens)> DecodeCalls => Calls.Where(c => c.Tokens == 1);

    /// <summary>Per kernel name: seconds per token of a prompt batch.</summary>
    public Dictionary<string, double> PromptSeconds { get; init; } = [];

    /// <summary>The first time this kernel is measured, its time is multiplied by this factor (interference).</summary>
    public (string Kernel, double Factor)? FirstCallPenalty { get; init; }

    /// <summary>This kernel's first prompt-batch measurements (as many as Calls) take Factor times as long (interference).</summary>
    public (string Kernel, double Factor, int Calls)? FirstPromptPenalty { get; init; }

    /// <summary>Warm-ups asked for, and rounds started.</summary>
    public List<(string Matrix, string Kernel, int Tokens)> WarmUps { get; } = [];

    public int Rounds { get; private set; }

    public void WarmUp(WeightMatrix matrix, MatVecKernel kernel, byte* weights, int tokens) => WarmUps.Add((matrix.Name, kernel.Name, tokens));

    public void StartRound(WeightMatrix matrix) => Rounds++;

    public double Seconds(WeightMatrix matrix, MatVecKernel kernel, byte* weights, int tokens)
    {
        Calls.Add((matrix.Name, kernel.Name, tokens));
        MatrixRows.Add(matrix.Rows);
        // The weights handed over are the ones the kernel reads: the map for MAD, a faithful copy otherwise.
        Assert.Equal(0, new ReadOnlySpan<byte>(weights, (int)matrix.ByteSize).SequenceCompareTo(new ReadOnlySpan<byte>(matrix.Data, (int)matrix.ByteSize)));
        var perToken = tokens > 1 && PromptSeconds.TryGetValue(kernel.Name, out var prompt) ? prompt : times.Single(t => t.Kernel == kernel.Name).Seconds;
        var seconds = perToken * tokens;
        if (tokens > 1 && FirstPromptPenalty is { } slow && slow.Kernel == kernel.Name
            && Calls.Count(c => c.Kernel == kernel.Name && c.Tokens > 1) <= slow.Calls)
            return seconds * slow.Factor;
        var first = Calls.Count(c => c.Kernel == kernel.Name) == 1;
        return first && FirstCallPenalty is { } penalty && penalty.Kernel == kernel.Name ? seconds * penalty.Factor : seconds;
    }
}

/// <summary>Small f32 matrices whose weights all equal a chosen value, over memory the fixture owns.</summary>
internal sealed unsafe class FakeMatrices : IDisposable
{
    private readonly List<NativeBuffer> _buffers = [];
    private readonly List<WeightMatrix> _matrices = [];

    public WeightMatrix Add(string name, int rows, int columns, float value, GgmlType type = GgmlType.F32)
    {
        var bytes = (long)rows * QuantTypes.Get(type).RowBytes(columns);
        var buffer = new NativeBuffer(bytes);
        new Span<float>(buffer.Pointer, (int)(bytes / 4)).Fill(value);
        _buffers.Add(buffer);
        var m = new WeightMatrix(name, type, columns, rows, buffer.Pointer);
        _matrices.Add(m);
        return m;
    }

    public void Dispose()
    {
        foreach (var m in _matrices)
            m.Dispose();
        foreach (var b in _buffers)
            b.Dispose();
    }
}
