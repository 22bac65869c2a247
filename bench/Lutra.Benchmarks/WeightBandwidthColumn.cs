using BenchmarkDotNet.Columns;
using BenchmarkDotNet.Reports;
using BenchmarkDotNet.Running;
using Lutra.Core.Quants;

namespace Lutra.Benchmarks;

/// <summary>Weight bytes read per call divided by the mean time: the number to compare with memory bandwidth.</summary>
public sealed class WeightBandwidthColumn : IColumn
{
    public static readonly WeightBandwidthColumn Instance = new();

    public string Id => nameof(WeightBandwidthColumn);
    public string ColumnName => "Weight GB/s";
    public bool AlwaysShow => true;
    public ColumnCategory Category => ColumnCategory.Custom;
    public int PriorityInCategory => 0;
    public bool IsNumeric => true;
    public UnitType UnitType => UnitType.Dimensionless;
    public string Legend => "Weight bytes streamed per call / mean time (1 GB = 1e9 bytes)";

    public bool IsAvailable(Summary summary) => true;

    public bool IsDefault(Summary summary, BenchmarkCase benchmarkCase) => false;

    public string GetValue(Summary summary, BenchmarkCase benchmarkCase) => GetValue(summary, benchmarkCase, SummaryStyle.Default);

    public string GetValue(Summary summary, BenchmarkCase benchmarkCase, SummaryStyle style)
    {
        var report = summary[benchmarkCase];
        if (report?.ResultStatistics is not { } stats || benchmarkCase.Parameters["Type"] is not GgmlType type)
            return "-";
        return (GemvBenchmarks.WeightBytes(type) / stats.Mean).ToString("F2", System.Globalization.CultureInfo.InvariantCulture);
    }

    public override string ToString() => ColumnName;
}
